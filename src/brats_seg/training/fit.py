"""The training stage: build the model, loss and optimizer under a strategy, and fit with checkpoints and resume."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

from omegaconf import DictConfig

from brats_seg.atomic import write_text
from brats_seg.errors import ConfigError, TrainingFailed
from brats_seg.runfolder import (
    BACKUP_DIR,
    CHECKPOINT_DIR,
    HISTORY_FILE,
    SUMMARY_FILE,
    TENSORBOARD_DIR,
    RunFolder,
)

log = logging.getLogger(__name__)


def fit_model(cfg: DictConfig, run_dir: Path, prepared, split, strategy, folder: RunFolder):
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
    train_cases = prepared.one_case_per_patient(split["train"])
    n_train = prepared.slice_count(train_cases)
    steps = trainer.steps_per_epoch or math.ceil(n_train / batch)
    has_val = bool(split["val"])
    val_steps = trainer.validation_steps if has_val else None
    if not has_val and trainer.early_stopping.enabled and str(trainer.early_stopping.monitor).startswith("val"):
        raise ConfigError(f"trainer.early_stopping.monitor={trainer.early_stopping.monitor} needs validation "
                          "patients, and data.split.val leaves none")
    train_ds = make_dataset(prepared, train_cases, batch, shuffle=True, seed=int(cfg.seed),
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
        loss = build_loss(cfg.loss, class_counts=prepared.class_counts(train_cases))
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
    write_text(run_dir / SUMMARY_FILE, model_summary(model))

    # Without validation patients the latest epoch's model is the one kept as best.keras.
    monitor = trainer.checkpoint_monitor if has_val else None
    nan_guard = NanGuard()
    checkpoints = BestAndLastCheckpoint(run_dir / CHECKPOINT_DIR, monitor=monitor,
                                        mode="max" if monitor and "dice" in monitor else "min",
                                        save_last=bool(trainer.save_last))
    callbacks = [
        checkpoints,
        keras.callbacks.CSVLogger(str(run_dir / HISTORY_FILE), append=True),
        nan_guard,
        *extra_callbacks,
    ]
    if int(trainer.epochs) > 1:
        # Restores at epoch boundaries only, so a one-epoch run has nothing to resume and skips the write.
        callbacks.insert(0, keras.callbacks.BackupAndRestore(str(run_dir / BACKUP_DIR), double_checkpoint=True))
    if trainer.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / TENSORBOARD_DIR), write_graph=False))
    if trainer.early_stopping.enabled:
        es = trainer.early_stopping
        callbacks.append(keras.callbacks.EarlyStopping(monitor=es.monitor, patience=int(es.patience),
                                                       mode="max" if "dice" in es.monitor else "min"))
    log.info("training %s (%s parameters) on %d slices of %d patients, %d steps/epoch",
             cfg.model.name, f"{model.count_params():,}", n_train, len(train_cases), steps)
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


def model_summary(model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line), line_length=120)
    return "\n".join(lines) + "\n"


def epochs_logged(run_dir: Path) -> int:
    import csv

    path = run_dir / HISTORY_FILE
    if not path.exists():
        return 0
    with path.open(newline="") as f:
        return len({row["epoch"] for row in csv.DictReader(f) if row.get("epoch")})
