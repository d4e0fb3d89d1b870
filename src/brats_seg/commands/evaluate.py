"""brats-seg evaluate: re-evaluate a run folder, or score a folder of predictions against reference segs."""

from __future__ import annotations

import sys
from pathlib import Path

from brats_seg.errors import ConfigError
from brats_seg.runfolder import METRICS_FILE, RunFolder

# A command line that works, shown when a mandatory option is missing.
EXAMPLE = "brats-seg evaluate run=outputs/runs/default-s42"


def _task(cfg) -> None:
    if cfg.run:
        _evaluate_run(cfg)
    elif cfg.pred or cfg.ref:
        if not (cfg.pred and cfg.ref):
            raise ConfigError("score predictions with both pred=DIR and ref=ROOT (and out=DIR)")
        from brats_seg.inference.scoring import score_prediction_folder

        out = Path(cfg.out) if cfg.out else Path(cfg.pred)
        allow_missing = (cfg.get("evaluate") or {}).get("allow_missing", True)
        if not isinstance(allow_missing, bool):
            raise ConfigError(
                f"evaluate.allow_missing must be true or false, got {allow_missing!r}")
        metrics = score_prediction_folder(Path(cfg.pred), Path(cfg.ref), out,
                                          empty_rule=cfg.empty_rule or "brats",
                                          allow_missing=allow_missing)
        _warn_unmatched(metrics, Path(cfg.pred))
        _print_regions(metrics, out / METRICS_FILE)
    else:
        raise ConfigError("give run=RUN_DIR, or pred=DIR ref=ROOT out=DIR")


def _evaluate_run(cfg) -> None:
    from brats_seg.inference.evaluate import evaluate_run
    from brats_seg.tf_import import import_tensorflow_quietly

    import_tensorflow_quietly()

    run_dir = Path(cfg.run)
    run_cfg = RunFolder(run_dir).read_config()
    if cfg.empty_rule:
        run_cfg.evaluate.empty_rule = cfg.empty_rule
    run_cfg.evaluate.batch_size = int(cfg.batch_size)
    metrics = evaluate_run(run_dir, cfg=run_cfg)
    if metrics.get("checkpoint_note"):
        print(f"{run_dir}: {metrics['checkpoint_note']}")
    ca = metrics["col_ave"]
    print(f"{run_dir}: Col Ave sensitivity {ca['sensitivity']:.4f}, specificity {ca['specificity']:.4f}, "
          f"F1 {ca['f1']:.4f}, precision {ca['precision']:.4f}")
    _print_regions(metrics, run_dir / METRICS_FILE)


def _warn_unmatched(metrics: dict, pred_dir: Path) -> None:
    from brats_seg.metrics.regions import HD95_EMPTY

    missing, orphans = metrics["missing"], metrics["unmatched_predictions"]
    if missing:
        print(f"brats-seg evaluate: warning: {len(missing)} of {len(metrics['per_patient'])} "
              f"reference case(s) have no prediction in {pred_dir}, scored Dice 0 / HD95 "
              f"{HD95_EMPTY}: {', '.join(missing)}", file=sys.stderr)
    if orphans:
        print(f"brats-seg evaluate: warning: {len(orphans)} prediction(s) have no reference seg "
              f"and are not scored: {', '.join(orphans)}", file=sys.stderr)


def _print_regions(metrics: dict, where: Path) -> None:
    for region, r in metrics["regions"].items():
        print(f"  {region}: Dice mean {r['dice_mean']:.4f} (median {r['dice_median']:.4f}), "
              f"HD95 mean {r['hd95_mean']:.2f} mm (median {r['hd95_median']:.2f})")
    print(f"wrote {where}")


def main(argv: list[str]) -> int:
    from brats_seg.config import run_hydra_app

    run_hydra_app(_task, "evaluate", "brats-seg evaluate", argv, example=EXAMPLE)
    return 0
