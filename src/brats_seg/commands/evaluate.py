"""brats-seg evaluate: re-evaluate a run folder, or score a folder of predictions against reference segs."""

from __future__ import annotations

from pathlib import Path

from brats_seg.errors import ConfigError
from brats_seg.runfolder import METRICS_FILE, RunFolder


def _task(cfg) -> None:
    if cfg.run:
        _evaluate_run(cfg)
    elif cfg.pred or cfg.ref:
        if not (cfg.pred and cfg.ref):
            raise ConfigError("score predictions with both pred=DIR and ref=ROOT (and out=DIR)")
        from brats_seg.inference.scoring import score_prediction_folder

        out = Path(cfg.out) if cfg.out else Path(cfg.pred)
        metrics = score_prediction_folder(Path(cfg.pred), Path(cfg.ref), out, empty_rule=cfg.empty_rule or "brats")
        _print_regions(metrics, out / METRICS_FILE)
    else:
        raise ConfigError("give run=RUN_DIR, or pred=DIR ref=ROOT out=DIR")


def _evaluate_run(cfg) -> None:
    from brats_seg.inference.ensemble import resolve_runs
    from brats_seg.inference.evaluate import evaluate_ensemble, evaluate_run

    run_dirs = resolve_runs(cfg.run)
    run_cfgs = [_with_overrides(RunFolder(r).read_config(), cfg) for r in run_dirs]
    if len(run_dirs) == 1 and not cfg.out:
        where = run_dirs[0]
        metrics = evaluate_run(where, cfg=run_cfgs[0])
    else:
        if not cfg.out:
            raise ConfigError(f"evaluate: an ensemble of {len(run_dirs)} runs needs out=DIR for its results")
        where = Path(cfg.out)
        metrics = evaluate_ensemble(run_dirs, where, run_cfgs, batch_size=int(cfg.batch_size))
    ca = metrics["col_ave"]
    used = metrics["inference"]
    print(f"{where}: {len(run_dirs)} run(s), tta={str(used['tta']).lower()}, postprocess={used['postprocess']}; "
          f"Col Ave sensitivity {ca['sensitivity']:.4f}, specificity {ca['specificity']:.4f}, "
          f"F1 {ca['f1']:.4f}, precision {ca['precision']:.4f}")
    _print_regions(metrics, where / METRICS_FILE)


def _with_overrides(run_cfg, cfg):
    """A run's config with the evaluate command's options that are set (null keeps the run's own)."""
    from omegaconf import open_dict

    with open_dict(run_cfg):
        if run_cfg.get("evaluate") is None:
            run_cfg.evaluate = {}
        ev = run_cfg.evaluate
        if cfg.empty_rule:
            ev.empty_rule = cfg.empty_rule
        ev.batch_size = int(cfg.batch_size)
        if cfg.get("tta") is not None:
            ev.tta = bool(cfg.tta)
        for key, value in (cfg.get("postprocess") or {}).items():
            if value is not None:
                if ev.get("postprocess") is None:
                    ev.postprocess = {}
                ev.postprocess[key] = value
    return run_cfg


def _print_regions(metrics: dict, where: Path) -> None:
    for region, r in metrics["regions"].items():
        print(f"  {region}: Dice mean {r['dice_mean']:.4f} (median {r['dice_median']:.4f}), "
              f"HD95 mean {r['hd95_mean']:.2f} mm (median {r['hd95_median']:.2f})")
    print(f"wrote {where}")


def main(argv: list[str]) -> int:
    from brats_seg.config import run_hydra_app

    run_hydra_app(_task, "evaluate", "brats-seg evaluate", argv)
    return 0
