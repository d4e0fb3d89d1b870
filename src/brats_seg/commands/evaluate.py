"""brats-seg evaluate: re-evaluate a run folder, or score a folder of predictions against reference
segs."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

from brats_seg.errors import ConfigError
from brats_seg.runfolder import METRICS_FILE, open_runs

# A command line that works, shown when a mandatory option is missing.
EXAMPLE = "brats-seg evaluate run=outputs/runs/default-s42"


def _task(cfg) -> None:
    if cfg.tune_postprocess:
        _tune_postprocess(cfg)
    elif cfg.run:
        _evaluate_run(cfg)
    elif cfg.pred or cfg.ref:
        if not (cfg.pred and cfg.ref):
            raise ConfigError("score predictions with both pred=DIR and ref=ROOT (and out=DIR)")
        from brats_seg.data.labels import LabelRules
        from brats_seg.inference.scoring import score_prediction_folder
        from brats_seg.outputs import check_files_beside

        out = Path(cfg.out) if cfg.out else Path(cfg.pred)
        check_files_beside(out, [METRICS_FILE], "evaluate", "out" if cfg.out else "pred")
        lesionwise = True if cfg.get("lesionwise") is None else bool(cfg.lesionwise)
        labels = LabelRules.from_cfg(cfg.labels, "labels")
        metrics = score_prediction_folder(
            Path(cfg.pred),
            Path(cfg.ref),
            out,
            empty_rule=cfg.empty_rule or "brats",
            allow_missing=cfg.evaluate.allow_missing,
            lesionwise=lesionwise,
            labels=labels,
        )
        _warn_unmatched(metrics, Path(cfg.pred))
        _print_regions(metrics, out / METRICS_FILE)
    else:
        raise ConfigError("give run=RUN_DIR, or pred=DIR ref=ROOT out=DIR")


def _evaluate_run(cfg) -> None:
    from brats_seg.inference.ensemble import resolve_runs
    from brats_seg.inference.evaluate import evaluate_ensemble, evaluate_run
    from brats_seg.outputs import check_output_dir
    from brats_seg.tf_import import import_tensorflow_quietly

    if cfg.out:  # an evaluation of its own, beside no run: its folder is written whole
        check_output_dir(Path(cfg.out), "evaluate")
    import_tensorflow_quietly()

    run_dirs = resolve_runs(cfg.run)
    runs = open_runs(
        run_dirs,
        allow_incomplete=bool(cfg.allow_incomplete),
        use_last_checkpoint=bool(cfg.use_last_checkpoint),
    )
    run_cfgs = [_with_overrides(copy.deepcopy(run.cfg), cfg) for run in runs]
    if len(run_dirs) == 1 and not cfg.out:
        where = run_dirs[0]
        metrics = evaluate_run(runs[0], cfg=run_cfgs[0])
    else:
        if not cfg.out:
            raise ConfigError(
                f"evaluate: an ensemble of {len(run_dirs)} runs needs out=DIR for its results"
            )
        where = Path(cfg.out)
        if cfg.calibration:
            raise ConfigError(
                "calibration=true: a temperature is fitted per run, in its own folder; "
                "evaluate one run without out= (predict calibrated=true tempers each member)"
            )
        metrics = evaluate_ensemble(runs, where, run_cfgs, batch_size=int(cfg.batch_size))
    for run in runs:
        for note in run.notes:
            print(f"{run.path}: {note}")
    ca = metrics["col_ave"]
    used = metrics["inference"]
    print(
        f"{where}: {len(run_dirs)} run(s), tta={str(used['tta']).lower()}, "
        f"postprocess={used['postprocess']}, backend={used['backend']}; "
        f"Col Ave sensitivity {ca['sensitivity']:.4f}, specificity {ca['specificity']:.4f}, "
        f"F1 {ca['f1']:.4f}, precision {ca['precision']:.4f}"
    )
    if metrics.get("calibration"):
        c = metrics["calibration"]
        print(
            f"  calibration: temperature {c['temperature']:.4f}, "
            f"ECE {c['ece_before']:.4f} -> {c['ece_after']:.4f}"
        )
    _print_regions(metrics, where / METRICS_FILE)


def _tune_postprocess(cfg) -> None:
    """Choose a run's post-processing on its validation patients; store it in postprocess.json."""
    from brats_seg.inference.ensemble import resolve_runs
    from brats_seg.inference.postprocess_tuning import tune_run, validation_cases
    from brats_seg.tf_import import import_tensorflow_quietly

    if not cfg.run:
        raise ConfigError("tune_postprocess=true tunes a run: give run=RUN_DIR")
    given = sorted(key for key, value in cfg.postprocess.items() if value is not None)
    if given:
        raise ConfigError(
            f"tune_postprocess=true chooses postprocess.{given[0]} itself; drop that option"
        )
    if cfg.out:
        raise ConfigError("tune_postprocess=true writes into the run folder; drop out=")
    run_dirs = resolve_runs(cfg.run)
    if len(run_dirs) != 1:
        raise ConfigError(
            f"tune_postprocess=true tunes one run, and run= names {len(run_dirs)}: give run=RUN_DIR"
        )
    (run,) = open_runs(
        run_dirs,
        allow_incomplete=bool(cfg.allow_incomplete),
        use_last_checkpoint=bool(cfg.use_last_checkpoint),
    )
    validation_cases(run)  # refused before TensorFlow is imported
    import_tensorflow_quietly()
    record = tune_run(run, _with_overrides(copy.deepcopy(run.cfg), cfg), batch_size=cfg.batch_size)
    print(
        f"{run.path}: post-processing tuned on {len(record['cases'])} validation patient(s) "
        f"({', '.join(record['cases'])}), {record['metric']}:"
    )
    for region, result in record["regions"].items():
        best = result["chosen"]
        threshold = f"threshold {best['threshold']:g}" if best["threshold"] else "argmax"
        print(
            f"  {region}: {threshold}, min size {best['min_size']} voxels: Dice "
            f"{best['score']:.4f} (without: {result['without']:.4f})"
        )
    print(f"wrote {run.folder.postprocess_path}; brats-seg predict applies it")


def _with_overrides(run_cfg, cfg):
    """A run's config with the evaluate command's options that are set (null keeps the run's
    own)."""
    from omegaconf import open_dict

    from brats_seg.config_schema import run_setting
    from brats_seg.inference.backends import backend_option

    with open_dict(run_cfg):
        ev = run_cfg.evaluate
        ev.batch_size = cfg.batch_size
        for key in ("empty_rule", "tta", "lesionwise"):
            ev[key] = run_setting(cfg[key], ev[key])
        # a run trained before evaluate.calibration existed was not calibrated
        ev.calibration = run_setting(cfg.calibration, ev.get("calibration", False))
        for key, value in cfg.postprocess.items():
            ev.postprocess[key] = run_setting(value, ev.postprocess.get(key))
        ev.backend = backend_option(run_cfg, cfg.backend)
    return run_cfg


def _warn_unmatched(metrics: dict, pred_dir: Path) -> None:
    from brats_seg.metrics.regions import HD95_EMPTY

    missing, orphans = metrics["missing"], metrics["unmatched_predictions"]
    if missing:
        print(
            f"brats-seg evaluate: warning: {len(missing)} of {len(metrics['per_patient'])} "
            f"reference case(s) have no prediction in {pred_dir}, scored Dice 0 / HD95 "
            f"{HD95_EMPTY}: {', '.join(missing)}",
            file=sys.stderr,
        )
    if orphans:
        print(
            f"brats-seg evaluate: warning: {len(orphans)} prediction(s) have no reference seg "
            f"and are not scored: {', '.join(orphans)}",
            file=sys.stderr,
        )


def _print_regions(metrics: dict, where: Path) -> None:
    for region, r in metrics["regions"].items():
        print(
            f"  {region}: Dice mean {r['dice_mean']:.4f} (median {r['dice_median']:.4f}), "
            f"HD95 mean {r['hd95_mean']:.2f} mm (median {r['hd95_median']:.2f})"
        )
    _print_lesionwise(metrics)
    print(f"wrote {where}")


def _print_lesionwise(metrics: dict) -> None:
    for convention, regions in (metrics.get("lesionwise") or {}).items():
        print(f"  lesion-wise, {metrics['lesionwise_conventions'][convention]}:")
        for region, r in regions.items():
            dice = r.get("dsc_mean", r.get("dice_mean"))
            print(
                f"    {region}: Dice {dice:.4f}, HD95 {r['hd95_mean']:.2f} mm, "
                f"lesions tp {r['tp']} fp {r['fp']} fn {r['fn']}"
            )


def main(argv: list[str]) -> int:
    from brats_seg.config import run_hydra_app

    run_hydra_app(_task, "evaluate", "brats-seg evaluate", argv, example=EXAMPLE)
    return 0
