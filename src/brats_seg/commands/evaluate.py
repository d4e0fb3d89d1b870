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
    from brats_seg.inference.evaluate import evaluate_run

    run_dir = Path(cfg.run)
    run_cfg = RunFolder(run_dir).read_config()
    if cfg.empty_rule:
        run_cfg.evaluate.empty_rule = cfg.empty_rule
    run_cfg.evaluate.batch_size = int(cfg.batch_size)
    metrics = evaluate_run(run_dir, cfg=run_cfg)
    ca = metrics["col_ave"]
    print(f"{run_dir}: Col Ave sensitivity {ca['sensitivity']:.4f}, specificity {ca['specificity']:.4f}, "
          f"F1 {ca['f1']:.4f}, precision {ca['precision']:.4f}")
    _print_regions(metrics, run_dir / METRICS_FILE)


def _print_regions(metrics: dict, where: Path) -> None:
    for region, r in metrics["regions"].items():
        print(f"  {region}: Dice mean {r['dice_mean']:.4f} (median {r['dice_median']:.4f}), "
              f"HD95 mean {r['hd95_mean']:.2f} mm (median {r['hd95_median']:.2f})")
    print(f"wrote {where}")


def main(argv: list[str]) -> int:
    from brats_seg.config import run_hydra_app

    run_hydra_app(_task, "evaluate", "brats-seg evaluate", argv)
    return 0
