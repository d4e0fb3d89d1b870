"""One training run, start to finish: data, model, fit with resume, evaluation, status and the experiment table."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from omegaconf import DictConfig, OmegaConf

from brats_seg.atomic import write_json, write_text
from brats_seg.errors import ConfigError, RunError, TrainingFailed, first_line
from brats_seg.training.runfolder import COMPLETED, RunFolder, config_hash

log = logging.getLogger(__name__)


def absolute_paths(resolved: dict[str, Any]) -> dict[str, Any]:
    """Make the paths of a resolved config absolute, so the run folder's config.yaml works from any directory."""
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

    A completed run of the same configuration is not trained again (``trainer.force=true`` retrains); a run folder
    holding a different configuration is refused rather than mixed.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    folder = RunFolder(run_dir)
    resolved = absolute_paths(OmegaConf.to_container(cfg, resolve=True))
    cfg = OmegaConf.create(resolved)
    chash = config_hash(resolved)
    previous = folder.read() or {}
    if previous.get("config_hash") not in (None, chash) and not cfg.trainer.force:
        raise RunError(
            f"{run_dir} holds a run of a different configuration; pick another folder (hydra.run.dir=...) "
            "or pass trainer.force=true to replace it"
        )
    if previous.get("status") == COMPLETED and not cfg.trainer.force:
        log.info("%s: already completed, skipping (trainer.force=true trains it again)", run_dir)
        return json.loads((run_dir / "metrics.json").read_text())
    lock = FileLock(str(run_dir / ".run.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout as err:
        raise RunError(f"{run_dir} is in use by another brats-seg process") from err
    try:
        if cfg.trainer.force and previous:
            _clear_previous(run_dir)
        write_text(run_dir / "config.yaml", OmegaConf.to_yaml(resolved))
        folder.start(config_hash=chash, experiment_id=cfg.get("experiment_id"), model=cfg.model.name, seed=cfg.seed)
        try:
            return _run(cfg, run_dir, folder)
        except KeyboardInterrupt:
            folder.fail("interrupted")
            raise
        except Exception as err:
            folder.fail(f"{type(err).__name__}: {first_line(err)}")
            raise
    finally:
        lock.release()


def _clear_previous(run_dir: Path) -> None:
    import shutil

    for name in ("backup", "checkpoints", "tensorboard", "plots"):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    for name in ("history.csv", "metrics.json", "metrics.md", "split.json", "run.json", "model.txt"):
        (run_dir / name).unlink(missing_ok=True)


def _run(cfg: DictConfig, run_dir: Path, folder: RunFolder) -> dict[str, Any]:
    import keras

    from brats_seg import memory
    from brats_seg.data.dataset import prepare_data
    from brats_seg.training import hardware
    from brats_seg.training.evaluate import checkpoint_path, evaluate_model, load_best_model, write_evaluation
    from brats_seg.training.experiments_table import append_row, row_from_metrics

    trainer = cfg.trainer
    hardware.configure_cpu_devices(trainer.get("cpu_devices"))
    keras.backend.clear_session()
    keras.utils.set_random_seed(int(cfg.seed))
    precision = hardware.resolve_precision(trainer.precision)
    keras.mixed_precision.set_global_policy(precision)
    strategy = hardware.make_strategy(trainer.strategy)
    folder.update(precision=precision, device=hardware.device_description(),
                  replicas=strategy.num_replicas_in_sync, versions=_versions(), malloc_keeps_freed=memory.applied)

    prepared = prepare_data(cfg.data)
    split = _load_or_make_split(run_dir, prepared)
    if folder.read().get("trained") and checkpoint_path(run_dir) is not None:
        # An earlier attempt finished training and stopped during evaluation: evaluate, do not train again.
        log.info("%s: training finished in an earlier attempt; evaluating its checkpoint", run_dir)
        model = None
    else:
        model = _fit(cfg, run_dir, prepared, split, strategy, folder)
        folder.update(trained=True, epochs_done=_epochs_logged(run_dir))
    # Both here and in `brats-seg evaluate`, the result is the best checkpoint's (the last one's without it);
    # _fit hands back its model only when that is the best checkpoint, which spares reading it back.
    if model is None:
        model = load_best_model(run_dir)

    ev = cfg.evaluate
    if not split["test"]:
        # data.split.test=0: every patient trained the model; score it on other patients with predict/evaluate.
        metrics = {"test_cases": [], "params": int(model.count_params()),
                   "note": "no test patients (data.split.test=0); score with brats-seg predict or evaluate"}
        write_json(run_dir / "metrics.json", metrics)
        folder.complete()
        log.info("%s: completed; no test patients to evaluate", run_dir)
        return metrics
    from brats_seg.models.registry import divisor

    metrics, overlays = evaluate_model(model, prepared, split["test"], empty_rule=ev.empty_rule,
                                       batch_size=int(ev.batch_size), n_overlays=int(ev.overlays),
                                       divisor=divisor(cfg.model), tta=bool(ev.get("tta", False)),
                                       postprocess=ev.get("postprocess"))
    metrics["params"] = int(model.count_params())
    title = cfg.get("experiment_id") or run_dir.name
    write_evaluation(run_dir, metrics, overlays, title=str(title))
    folder.complete()
    _append_experiment_row(cfg, run_dir, metrics, append_row, row_from_metrics)
    log.info("%s: completed; Col Ave F1 %.4f, mean WT Dice %.4f", run_dir, metrics["col_ave"]["f1"],
             metrics["regions"]["WT"]["dice_mean"])
    return metrics


def _versions() -> dict[str, str]:
    from brats_seg.training.runfolder import versions

    return versions()


def _epochs_logged(run_dir: Path) -> int:
    import csv

    path = run_dir / "history.csv"
    if not path.exists():
        return 0
    with path.open(newline="") as f:
        return len({row["epoch"] for row in csv.DictReader(f) if row.get("epoch")})


def _load_or_make_split(run_dir: Path, prepared) -> dict[str, list[str]]:
    path = run_dir / "split.json"
    if path.exists():
        split = json.loads(path.read_text())
        missing = sorted(set(sum(split.values(), [])) - set(prepared.case_ids))
        if missing:
            raise RunError(f"{path}: cases {', '.join(missing[:5])} are no longer in the data set")
        return split
    split = prepared.split()
    write_json(path, split)
    return split


def _fit(cfg: DictConfig, run_dir: Path, prepared, split, strategy, folder: RunFolder):
    """Train with resume and checkpoints; return the model if its final weights are the best checkpoint's."""
    import keras

    from brats_seg.data.pipeline import make_dataset
    from brats_seg.data.sampling import SamplingSettings
    from brats_seg.losses import TumourDice, build_loss
    from brats_seg.models import build_model
    from brats_seg.models.registry import divisor
    from brats_seg.training.callbacks import BestAndLastCheckpoint, NanGuard
    from brats_seg.training.optimizers import build_optimizer

    trainer = cfg.trainer
    batch = int(trainer.batch_size)
    replicas = strategy.num_replicas_in_sync
    if batch % replicas:
        raise ConfigError(f"trainer.batch_size={batch} must be a multiple of the {replicas} replicas in sync")
    sampling = SamplingSettings.from_data_cfg(cfg.data)
    fully_convolutional = sampling.patch_size is not None or bool(trainer.get("fully_convolutional", False))
    div = divisor(cfg.model)
    if sampling.patch_size is not None and any(side % div for side in sampling.patch_size):
        raise ConfigError(f"data.patch.size {list(sampling.patch_size)}: model {cfg.model.name} needs sides "
                          f"divisible by {div}")
    n_train = prepared.slice_count(split["train"])
    steps = trainer.steps_per_epoch or math.ceil(n_train / batch)
    has_val = bool(split["val"])
    val_steps = trainer.validation_steps if has_val else None
    if not has_val and trainer.early_stopping.enabled and str(trainer.early_stopping.monitor).startswith("val"):
        raise ConfigError(f"trainer.early_stopping.monitor={trainer.early_stopping.monitor} needs validation "
                          "patients, and data.split.val leaves none")
    train_ds = make_dataset(prepared, split["train"], batch, shuffle=True, seed=int(cfg.seed),
                            augment_cfg=cfg.data.augment, repeat=trainer.steps_per_epoch is not None,
                            split_name="train", sampling=sampling)
    val_ds = None
    if has_val:
        val_ds = make_dataset(prepared, split["val"], batch, shuffle=False, seed=int(cfg.seed),
                              repeat=val_steps is not None, split_name="val",
                              pad_multiple=div if fully_convolutional else 1)
    height, width, channels = prepared.input_shape
    input_shape = (None, None, channels) if fully_convolutional else (height, width, channels)

    with strategy.scope():
        model = build_model(cfg.model, input_shape, prepared.num_classes)
        loss = build_loss(cfg.loss, class_counts=prepared.class_counts(split["train"]))
        optimizer, extra_callbacks = build_optimizer(cfg.optimizer, int(trainer.epochs) * steps)
        n_outputs = len(model.outputs)
        model.compile(optimizer=optimizer, loss=[loss] * n_outputs if n_outputs > 1 else loss,
                      metrics=[TumourDice()] if n_outputs == 1 else None,
                      run_eagerly=bool(trainer.get("run_eagerly", False)))
    folder.update(params=int(model.count_params()))
    if n_outputs > 1:  # deep supervision: every output learns the same target
        train_ds = train_ds.map(lambda x, y: (x, (y,) * n_outputs))
        if val_ds is not None:
            val_ds = val_ds.map(lambda x, y: (x, (y,) * n_outputs))
    write_text(run_dir / "model.txt", _summary(model))

    # Without validation patients the latest epoch's model is the one kept as best.keras.
    monitor = trainer.checkpoint_monitor if has_val else None
    nan_guard = NanGuard()
    checkpoints = BestAndLastCheckpoint(run_dir / "checkpoints", monitor=monitor,
                                        mode="max" if monitor and "dice" in monitor else "min",
                                        save_last=bool(trainer.save_last))
    callbacks = [
        checkpoints,
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        nan_guard,
        *extra_callbacks,
    ]
    if int(trainer.epochs) > 1:
        # Restores at epoch boundaries only, so a one-epoch run has nothing to resume and skips the write.
        callbacks.insert(0, keras.callbacks.BackupAndRestore(str(run_dir / "backup"), double_checkpoint=True))
    if trainer.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard"), write_graph=False))
    if trainer.early_stopping.enabled:
        es = trainer.early_stopping
        callbacks.append(keras.callbacks.EarlyStopping(monitor=es.monitor, patience=int(es.patience),
                                                       mode="max" if "dice" in es.monitor else "min"))
    log.info("training %s (%s parameters) on %d slices of %d patients, %d steps/epoch",
             cfg.model.name, f"{model.count_params():,}", n_train, len(split["train"]), steps)
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(train_ds, validation_data=val_ds, epochs=int(trainer.epochs), steps_per_epoch=trainer.steps_per_epoch,
              validation_steps=val_steps, callbacks=callbacks, verbose=int(trainer.verbose))
    # Added up over the attempts that got through fit (time of an attempt killed mid-training is lost). CPU
    # time is the process's (every thread); it stays meaningful when other work shares the cores.
    before = folder.read() or {}
    folder.update(train_seconds=round(before.get("train_seconds", 0.0) + time.perf_counter() - wall, 1),
                  train_cpu_seconds=round(before.get("train_cpu_seconds", 0.0) + time.process_time() - cpu, 1))
    if nan_guard.nan_at is not None:
        epoch, batch_index = nan_guard.nan_at
        raise TrainingFailed(f"loss became NaN at epoch {epoch + 1}, batch {batch_index + 1}; lower optimizer.lr "
                             "or try trainer.precision=float32")
    return model if checkpoints.best_is_latest else None


def _summary(model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line), line_length=120)
    return "\n".join(lines) + "\n"


def _append_experiment_row(cfg, run_dir, metrics, append_row, row_from_metrics) -> None:
    from brats_seg.naming import loss_label, optimizer_label, preprocessing_label

    row = row_from_metrics(
        metrics,
        finished=RunFolder(run_dir).read().get("ended"),
        run_dir=str(run_dir),
        experiment_id=cfg.get("experiment_id") or "",
        model=cfg.model.name,
        loss=loss_label(cfg.loss),
        optimizer=optimizer_label(cfg.optimizer),
        preprocessing=preprocessing_label(cfg.data),
        params=metrics["params"],
    )
    try:
        append_row(cfg.paths.experiments_table, row)
    except (OSError, Timeout) as err:
        # The run's own folder already holds its complete result, and `brats-seg table` rebuilds the table from
        # run folders, so a table that cannot be written must not turn a completed run into a failed one.
        log.warning("%s: completed, but its row was not appended to %s (%s); `brats-seg table` rebuilds the table",
                    run_dir, cfg.paths.experiments_table, first_line(err) or type(err).__name__)
