"""One training job, start to finish: data, fit with resume, evaluation, status and the experiment
table.

The job spans the stages, so it sits above them: it calls training, inference and results, none of
which imports it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from omegaconf import DictConfig, OmegaConf

from brats_seg.atomic import write_json, write_text
from brats_seg.config_schema import to_plain
from brats_seg.errors import RunError, Terminated, first_line
from brats_seg.runfolder import (
    COMPLETED,
    CONFIG_FILE,
    LOCK_FILE,
    METRICS_FILE,
    RESULT_DIRS,
    RESULT_FILES,
    SPLIT_FILE,
    RunFolder,
    config_hash,
    matches_recorded_hash,
)
from brats_seg.training.tracking import log_completed_run, track_run

log = logging.getLogger(__name__)


def absolute_paths(resolved: dict[str, Any]) -> dict[str, Any]:
    """Make the paths of a resolved config absolute, so the run folder's config.yaml works from any
    directory."""
    import os

    for key, value in (resolved.get("paths") or {}).items():
        if isinstance(value, str):
            resolved["paths"][key] = os.path.abspath(value)
    data = resolved.get("data") or {}
    for key in ("root", "cache_dir"):
        if isinstance(data.get(key), str):
            data[key] = os.path.abspath(data[key])
    return resolved


def train_and_evaluate(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train and evaluate one configuration in ``run_dir``; resume it if it was interrupted.

    A completed run of the same configuration is not trained again (``trainer.force=true``
    retrains); a run folder holding a different configuration is refused rather than mixed. In a
    multi-worker run only the chief writes the run folder; the other workers train beside it and
    return an empty dict.
    """
    from brats_seg.training.cluster import worker_role

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    folder = RunFolder(run_dir)
    resolved = absolute_paths(to_plain(cfg))
    cfg = OmegaConf.create(resolved)
    chash = config_hash(resolved)
    role = worker_role(cfg.trainer.strategy)
    previous = folder.read() or {}
    recorded = previous.get("config_hash")
    if (
        recorded is not None
        and not matches_recorded_hash(resolved, recorded)
        and not cfg.trainer.force
    ):
        raise RunError(
            f"{run_dir} holds a run of a different configuration; pick another folder "
            "(hydra.run.dir=...) or pass trainer.force=true to replace it"
        )
    if previous.get("status") == COMPLETED and not cfg.trainer.force:
        log.info("%s: already completed, skipping (trainer.force=true trains it again)", run_dir)
        if not role.is_chief:
            return {}
        log_completed_run(cfg, run_dir)
        return folder.read_metrics()
    if not role.is_chief:
        return _run_worker(cfg, run_dir, folder, role)
    lock = FileLock(str(run_dir / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout as err:
        raise RunError(f"{run_dir} is in use by another brats-seg process") from err
    try:
        if cfg.trainer.force and previous:
            _clear_previous(run_dir)
        write_text(run_dir / CONFIG_FILE, OmegaConf.to_yaml(resolved))
        folder.start(
            config_hash=chash,
            experiment_id=cfg.experiment_id,
            model=cfg.model.name,
            seed=cfg.seed,
        )
        try:
            with track_run(cfg, run_dir) as tracker:
                return _run(cfg, run_dir, folder, role, tracker)
        except KeyboardInterrupt as err:
            # SIGTERM (errors.Terminated) or Ctrl-C: resumable, unlike a failure; the same command
            # picks it up from its last checkpoint.
            folder.interrupt("SIGTERM" if isinstance(err, Terminated) else "interrupted (Ctrl-C)")
            raise
        except Exception as err:
            folder.fail(f"{type(err).__name__}: {first_line(err)}")
            raise
    finally:
        lock.release()


def _clear_previous(run_dir: Path) -> None:
    import shutil

    for name in RESULT_DIRS:
        shutil.rmtree(run_dir / name, ignore_errors=True)
    for scratch in run_dir.glob(".worker-*"):
        shutil.rmtree(scratch, ignore_errors=True)
    for name in RESULT_FILES:
        (run_dir / name).unlink(missing_ok=True)


def _launched_in_parallel() -> bool:
    """Whether this job shares its machine with others of a sweep (Hydra's joblib launcher)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False
    launcher = HydraConfig.get().launcher
    return "joblib" in str(launcher.get("_target_", "")).lower() if launcher is not None else False


def _set_up_devices(cfg: DictConfig) -> tuple[str, Any, list[str]]:
    """Devices, seed, precision and strategy, before TensorFlow starts: (policy, strategy, GPUs)."""
    import keras

    from brats_seg.training import gpus, hardware

    trainer = cfg.trainer
    hardware.configure_cpu_devices(trainer.cpu_devices)
    gpu_models = gpus.configure_gpus(
        trainer.device,
        trainer.job_gpus,
        parallel=_launched_in_parallel(),
    )
    # MultiWorkerMirroredStrategy must configure TensorFlow's collectives before anything runs an
    # op.
    strategy = hardware.make_strategy(trainer.strategy)
    keras.backend.clear_session()
    keras.utils.set_random_seed(int(cfg.seed))
    precision = hardware.resolve_precision(trainer.precision)
    keras.mixed_precision.set_global_policy(precision)
    return precision, strategy, gpu_models


def _trained_before(folder: RunFolder) -> bool:
    return bool((folder.read() or {}).get("trained")) and folder.checkpoint_path() is not None


def _run_worker(cfg: DictConfig, run_dir: Path, folder: RunFolder, role) -> dict[str, Any]:
    """A non-chief worker of a multi-worker run: train beside the chief, write no run file."""
    import shutil

    from brats_seg.data.dataset import prepare_data
    from brats_seg.training.fit import fit_model

    scratch = role.scratch_dir(run_dir)
    shutil.rmtree(scratch, ignore_errors=True)  # left by a killed attempt
    try:
        _, strategy, _ = _set_up_devices(cfg)
        prepared = prepare_data(cfg.data)
        split = _load_or_make_split(run_dir, prepared, write=False)
        if _trained_before(folder):
            log.info(
                "%s: training finished in an earlier attempt; the chief evaluates it", role.name
            )
            return {}
        fit_model(cfg, run_dir, prepared, split, strategy, folder, role=role)
        log.info("%s: training done; the chief writes the results to %s", role.name, run_dir)
        return {}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run(cfg: DictConfig, run_dir: Path, folder: RunFolder, role, tracker=None) -> dict[str, Any]:
    from brats_seg import memory
    from brats_seg.data.dataset import prepare_data
    from brats_seg.inference.backends import run_backend
    from brats_seg.inference.calibration import calibrate_run, check_validation_patients
    from brats_seg.inference.evaluate import evaluate_model, write_evaluation
    from brats_seg.models.registry import divisor
    from brats_seg.results.experiments_table import append_row, row_from_metrics
    from brats_seg.training import hardware
    from brats_seg.training.fit import epochs_logged, fit_model

    precision, strategy, gpu_models = _set_up_devices(cfg)
    folder.update(
        precision=precision,
        device=hardware.device_description(),
        gpu_count=len(gpu_models),
        gpu_models=gpu_models,
        workers=role.workers,
        replicas=strategy.num_replicas_in_sync,
        versions=_versions(),
        malloc_keeps_freed=memory.applied,
    )

    prepared = prepare_data(cfg.data)
    split = _load_or_make_split(run_dir, prepared)
    calibrated = bool(cfg.evaluate.get("calibration"))
    if calibrated:
        check_validation_patients(split)
    if _trained_before(folder):
        # An earlier attempt finished training and stopped during evaluation: evaluate, do not train
        # again.
        log.info("%s: training finished in an earlier attempt; evaluating its checkpoint", run_dir)
        model = None
    else:
        extra = (tracker.callback(),) if tracker is not None else ()
        model = fit_model(
            cfg, run_dir, prepared, split, strategy, folder, role=role, extra_callbacks=extra
        )
        folder.update(trained=True, epochs_done=epochs_logged(run_dir))
    # Both here and in `brats-seg evaluate`, the result is the best checkpoint's (the last one's
    # without it); fit_model hands back its model only when that is the best checkpoint, which
    # spares reading it back.
    if model is None:
        model = folder.load_best_model()
    # The temperature is fitted (and stored for predict) even when there are no test patients.
    fit = (
        calibrate_run(folder, model, prepared, split, cfg, folder.checkpoint_path())
        if calibrated
        else None
    )

    ev = cfg.evaluate
    if not split["test"]:
        # data.split.test=0: every patient trained the model; score it on other patients with
        # predict/evaluate.
        metrics = {
            "test_cases": [],
            "params": int(model.count_params()),
            "note": (
                "no test patients (data.split.test=0); score with brats-seg predict or evaluate"
            ),
        }
        if fit:
            metrics["calibration"] = {"temperature": fit["temperature"], "fit": fit}
        write_json(run_dir / METRICS_FILE, metrics)
        folder.complete()
        log.info("%s: completed; no test patients to evaluate", run_dir)
        return metrics
    metrics, overlays = evaluate_model(
        run_backend(model, cfg, folder.checkpoint_path()),
        prepared,
        split["test"],
        empty_rule=ev.empty_rule,
        batch_size=int(ev.batch_size),
        n_overlays=int(ev.overlays),
        lesionwise=ev.lesionwise,
        divisor=divisor(cfg.model),
        tta=ev.tta,
        postprocess=ev.postprocess,
        temperature=fit["temperature"] if fit else None,
    )
    if fit:
        metrics["calibration"]["fit"] = fit
    metrics["params"] = int(model.count_params())
    title = cfg.experiment_id or run_dir.name
    write_evaluation(run_dir, metrics, overlays, title=str(title))
    folder.complete()
    _append_experiment_row(cfg, run_dir, metrics, append_row, row_from_metrics)
    log.info(
        "%s: completed; Col Ave F1 %.4f, mean WT Dice %.4f",
        run_dir,
        metrics["col_ave"]["f1"],
        metrics["regions"]["WT"]["dice_mean"],
    )
    return metrics


def _versions() -> dict[str, str]:
    from brats_seg.runfolder import versions

    return versions()


def _load_or_make_split(run_dir: Path, prepared, write: bool = True) -> dict[str, list[str]]:
    """The run's split.json, or a new split (deterministic: every worker makes the same one)."""
    path = run_dir / SPLIT_FILE
    if path.exists():
        split = json.loads(path.read_text())
        missing = sorted(set(sum(split.values(), [])) - set(prepared.case_ids))
        if missing:
            raise RunError(f"{path}: cases {', '.join(missing[:5])} are no longer in the data set")
        return split
    split = prepared.split()
    if write:
        write_json(path, split)
    return split


def _append_experiment_row(cfg, run_dir, metrics, append_row, row_from_metrics) -> None:
    from brats_seg.results.naming import loss_label, optimizer_label, preprocessing_label

    row = row_from_metrics(
        metrics,
        finished=RunFolder(run_dir).read().get("ended"),
        run_dir=str(run_dir),
        experiment_id=cfg.experiment_id or "",
        model=cfg.model.name,
        loss=loss_label(cfg.loss),
        optimizer=optimizer_label(cfg.optimizer),
        preprocessing=preprocessing_label(cfg.data),
        params=metrics["params"],
    )
    try:
        append_row(cfg.paths.experiments_table, row)
    except (OSError, Timeout) as err:
        # The run's own folder already holds its complete result, and `brats-seg table` rebuilds the
        # table from run folders, so a table that cannot be written must not turn a completed run
        # into a failed one.
        log.warning(
            "%s: completed, but its row was not appended to %s (%s); "
            "`brats-seg table` rebuilds the table",
            run_dir,
            cfg.paths.experiments_table,
            first_line(err) or type(err).__name__,
        )
