"""The training stage: build the model, loss and optimizer under a strategy, and fit with
checkpoints and resume."""

from __future__ import annotations

import hashlib
import logging
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

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
from brats_seg.training.cluster import SINGLE, WorkerRole
from brats_seg.training.multiworker import fit_across_workers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitData:
    """The training and validation streams of one fit, and the sizes they were built for."""

    train: Any  # tf.data.Dataset
    val: Any | None
    train_cases: list[str]
    n_slices: int
    batch: int
    steps: int  # per epoch
    val_steps: int | None
    input_shape: tuple[int | None, int | None, int]

    def for_outputs(self, n_outputs: int) -> FitData:
        """Deep supervision: every output of the model learns the same target."""
        if n_outputs == 1:
            return self

        def repeat_target(dataset):
            return dataset.map(lambda x, y: (x, (y,) * n_outputs))

        val = None if self.val is None else repeat_target(self.val)
        return replace(self, train=repeat_target(self.train), val=val)


@dataclass(frozen=True)
class FitCallbacks:
    """The callbacks of one fit, in the order Keras calls them, and those read after it."""

    all: list
    checkpoints: Any  # BestAndLastCheckpoint
    nan_guard: Any  # NanGuard
    throughput: Any  # Throughput


def fit_model(
    cfg: DictConfig,
    run_dir: Path,
    prepared,
    split,
    strategy,
    folder: RunFolder,
    role: WorkerRole = SINGLE,
    extra_callbacks: tuple = (),
):
    """Train with resume and checkpoints; return the model if its final weights are the best
    checkpoint's. ``extra_callbacks`` (an experiment tracker's) come after every other callback.

    Only the chief writes into ``run_dir``; another worker of a multi-worker run saves into its
    scratch folder (and removes it), restores from the chief's backup, and gets None back.
    """
    data = build_fit_data(cfg, prepared, split, strategy.num_replicas_in_sync, role.workers)
    model, schedule_callbacks = build_compiled_model(cfg, prepared, data, strategy)
    if role.workers > 1:
        fit_across_workers(model, strategy)
    data = data.for_outputs(len(model.outputs))
    if role.is_chief:
        folder.update(params=int(model.count_params()))
        write_text(run_dir / SUMMARY_FILE, model_summary(model))
    callbacks = build_callbacks(
        cfg.trainer, run_dir, role, data.batch, data.val is not None, schedule_callbacks
    )
    callbacks.all.extend(extra_callbacks)
    log.info(
        "training %s (%s parameters) on %d slices of %d patients, %d steps/epoch",
        cfg.model.name,
        f"{model.count_params():,}",
        data.n_slices,
        len(data.train_cases),
        data.steps,
    )
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(
        data.train,
        validation_data=data.val,
        epochs=int(cfg.trainer.epochs),
        steps_per_epoch=cfg.trainer.steps_per_epoch,
        validation_steps=data.val_steps,
        callbacks=callbacks.all,
        verbose=resolve_verbose(cfg.trainer.verbose) if role.is_chief else 0,
    )
    record_fit(model, folder, role, callbacks, wall, cpu)
    # A model of a multi-worker strategy predicts collectively, with every worker; the chief
    # evaluates alone, from the checkpoint.
    return model if callbacks.checkpoints.best_is_latest and role.workers == 1 else None


def build_fit_data(cfg: DictConfig, prepared, split, replicas: int, workers: int) -> FitData:
    """The training and validation datasets of ``split``, checked against the trainer options,
    batched whole for several replicas and sharded for several workers."""
    from brats_seg.data.pipeline import make_dataset
    from brats_seg.data.sampling import SamplingSettings
    from brats_seg.models.registry import divisor

    trainer = cfg.trainer
    batch = int(trainer.batch_size)
    sampling = SamplingSettings.from_data_cfg(cfg.data)
    train_cases, val_cases = training_cases(prepared, split)
    has_val = bool(val_cases)
    check_fit_options(cfg, replicas, has_val)
    fully_convolutional = sampling.patch_size is not None or trainer.fully_convolutional
    div = divisor(cfg.model)
    n_slices = prepared.slice_count(train_cases)
    val_steps = trainer.validation_steps if has_val else None
    train_ds = make_dataset(
        prepared,
        train_cases,
        batch,
        shuffle=True,
        seed=int(cfg.seed),
        augment_cfg=cfg.data.augment,
        repeat=trainer.steps_per_epoch is not None,
        split_name="train",
        sampling=sampling,
    )
    val_ds = None
    if has_val:
        val_ds = make_dataset(
            prepared,
            val_cases,
            batch,
            shuffle=False,
            seed=int(cfg.seed),
            repeat=val_steps is not None,
            split_name="val",
            pad_multiple=div if fully_convolutional else 1,
        )
    if replicas > 1:
        train_ds, val_ds = whole_batches_for_replicas(
            prepared, train_ds, val_ds, train_cases, val_cases, trainer, replicas
        )
    if workers > 1:
        train_ds = shard_by_data(train_ds)
        val_ds = None if val_ds is None else shard_by_data(val_ds)
    height, width, channels = prepared.input_shape
    return FitData(
        train=train_ds,
        val=val_ds,
        train_cases=train_cases,
        n_slices=n_slices,
        batch=batch,
        steps=trainer.steps_per_epoch or math.ceil(n_slices / batch),
        val_steps=val_steps,
        input_shape=(None, None, channels) if fully_convolutional else (height, width, channels),
    )


def check_fit_options(cfg: DictConfig, replicas: int, has_val: bool) -> None:
    """Refuse trainer options that this split or strategy cannot honour (the patch size against
    the model is checked with the options, brats_seg.models.registry.check_patch_size)."""
    trainer = cfg.trainer
    batch = int(trainer.batch_size)
    if batch % replicas:
        raise ConfigError(
            f"trainer.batch_size={batch} must be a multiple of the {replicas} replicas in sync"
        )
    if (
        not has_val
        and trainer.early_stopping.enabled
        and str(trainer.early_stopping.monitor).startswith("val")
    ):
        raise ConfigError(
            f"trainer.early_stopping.monitor={trainer.early_stopping.monitor} needs validation "
            "patients, and data.split.val leaves none"
        )


def whole_batches_for_replicas(
    prepared, train_ds, val_ds, train_cases, val_cases, trainer, replicas: int
):
    """``(train_ds, val_ds)`` cut into full batches; refuses a single pass shorter than a batch."""
    batch = int(trainer.batch_size)
    train_repeated = trainer.steps_per_epoch is not None
    val_repeated = val_ds is not None and trainer.validation_steps is not None
    passes = (("train", train_cases, train_repeated), ("val", val_cases, val_repeated))
    for name, cases, repeated in passes:
        if cases and not repeated and prepared.slice_count(cases) < batch:
            option = "steps_per_epoch" if name == "train" else "validation_steps"
            raise ConfigError(
                f"trainer.batch_size={batch}: the {name} split has fewer slices; "
                f"a run on {replicas} replicas uses full batches only, "
                f"set trainer.{option}"
            )
    train_ds = whole_batches(train_ds, batch, repeated=train_repeated)
    if val_ds is not None:
        val_ds = whole_batches(val_ds, batch, repeated=val_repeated)
    return train_ds, val_ds


def build_compiled_model(cfg: DictConfig, prepared, data: FitData, strategy):
    """``(model, schedule_callbacks)``: the model, loss and optimizer built under ``strategy`` and
    compiled; the callbacks are the optimizer's learning-rate schedule's."""
    from brats_seg.losses import TumourDice, build_loss
    from brats_seg.models import build_model
    from brats_seg.training.optimizers import build_optimizer

    with strategy.scope():
        model = build_model(cfg.model, data.input_shape, prepared.num_classes)
        loss = build_loss(cfg.loss, class_counts=prepared.class_counts(data.train_cases))
        total_steps = int(cfg.trainer.epochs) * data.steps
        optimizer, schedule_callbacks = build_optimizer(cfg.optimizer, total_steps)
        n_outputs = len(model.outputs)
        model.compile(
            optimizer=optimizer,
            loss=[loss] * n_outputs if n_outputs > 1 else loss,
            metrics=[TumourDice()] if n_outputs == 1 else None,
            run_eagerly=cfg.trainer.run_eagerly,
        )
    return model, schedule_callbacks


def build_callbacks(
    trainer: DictConfig,
    run_dir: Path,
    role: WorkerRole,
    batch: int,
    has_val: bool,
    schedule_callbacks: list,
) -> FitCallbacks:
    """Checkpoints, history, NaN guard, throughput, the schedule's callbacks, TensorBoard, early
    stopping and the resume backup, in that order; only the chief writes into ``run_dir``."""
    import keras

    from brats_seg.training.callbacks import (
        BestAndLastCheckpoint,
        NanGuard,
        RunBackup,
        Throughput,
        backed_up_epoch,
    )

    chief = role.is_chief
    scratch = None if chief else role.scratch_dir(run_dir)
    # Without validation patients the latest epoch's model is the one kept as best.keras.
    monitor = trainer.checkpoint_monitor if has_val else None
    nan_guard = NanGuard()
    checkpoints = BestAndLastCheckpoint(
        run_dir / CHECKPOINT_DIR,
        monitor=monitor,
        mode="max" if monitor and "dice" in monitor else "min",
        save_last=bool(trainer.save_last),
        write_folder=None if chief else scratch / CHECKPOINT_DIR,
    )
    throughput = Throughput(batch, folder=RunFolder(run_dir) if chief else None)
    callbacks = [checkpoints, nan_guard, throughput, *schedule_callbacks]
    if chief:
        # Rows of epochs after the backup were written by an attempt killed before it could back
        # them up; they are trained again, so they are dropped rather than logged twice.
        trim_history(run_dir / HISTORY_FILE, backed_up_epoch(run_dir / BACKUP_DIR))
        callbacks.insert(1, keras.callbacks.CSVLogger(str(run_dir / HISTORY_FILE), append=True))
    if trainer.tensorboard and chief:
        callbacks.append(
            keras.callbacks.TensorBoard(log_dir=str(run_dir / TENSORBOARD_DIR), write_graph=False)
        )
    if trainer.early_stopping.enabled:
        es = trainer.early_stopping
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=es.monitor,
                patience=int(es.patience),
                mode="max" if "dice" in es.monitor else "min",
            )
        )
    if int(trainer.epochs) > 1:
        # Last, so that an epoch is backed up only once its history row and checkpoints are
        # written. Restores at epoch boundaries only, so a one-epoch run has nothing to resume.
        backup_scratch = None if chief else scratch / BACKUP_DIR
        callbacks.append(RunBackup(run_dir / BACKUP_DIR, write_dir=backup_scratch))
    return FitCallbacks(callbacks, checkpoints, nan_guard, throughput)


def record_fit(
    model, folder: RunFolder, role: WorkerRole, callbacks: FitCallbacks, wall: float, cpu: float
) -> None:
    """After ``model.fit`` (begun at ``perf_counter`` ``wall`` and ``process_time`` ``cpu``): the
    chief adds the training time to the run's record; a NaN loss fails the run; the weights'
    fingerprint is logged and, by the chief, recorded with the last epoch's throughput."""
    chief = role.is_chief
    if chief:
        # Added up over the attempts that got through fit (time of an attempt killed mid-training is
        # lost; run.json's epoch_seconds, written by Throughput as each epoch ends, keeps the
        # seconds of every epoch the run kept, whichever attempt trained it). CPU time is the
        # process's (every thread); it stays meaningful when other work shares the cores.
        before = folder.read() or {}
        folder.update(
            train_seconds=round(before.get("train_seconds", 0.0) + time.perf_counter() - wall, 1),
            train_cpu_seconds=round(
                before.get("train_cpu_seconds", 0.0) + time.process_time() - cpu, 1
            ),
        )
    if callbacks.nan_guard.nan_at is not None:
        epoch, batch_index = callbacks.nan_guard.nan_at
        raise TrainingFailed(
            f"loss became NaN at epoch {epoch + 1}, batch {batch_index + 1}; lower optimizer.lr "
            "or try trainer.precision=float32"
        )
    fingerprint = weights_fingerprint(model)
    log.info("%s: weights after training: %s", role.name, fingerprint)
    if chief:
        # Slices per second of the last epoch's training steps (the first epoch also builds the
        # graph).
        folder.update(weights_fingerprint=fingerprint, train_slices_per_s=callbacks.throughput.last)


def training_cases(prepared, split: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """The train and validation cases a run draws from: each split with the second name of an
    identical scan dropped, so a patient shipped twice weighs once in training and in the
    validation loss, as in the test scores."""
    return prepared.one_case_per_patient(split["train"]), prepared.one_case_per_patient(
        split["val"]
    )


def resolve_verbose(verbose) -> int:
    """``trainer.verbose``: 0, 1 (progress bar), 2 (a line per epoch), auto (1 on a tty, else 2)."""
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    if verbose in (0, 1, 2) and not isinstance(verbose, bool):
        return int(verbose)
    raise ConfigError(f"trainer.verbose={verbose!r}: expected auto, 0, 1 or 2")


def weights_fingerprint(model) -> str:
    """A short hash of the model's weights: equal on every worker of a synchronous run."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(weight.tobytes())
    return digest.hexdigest()[:16]


def whole_batches(dataset, batch: int, repeated: bool):
    """Only full batches, so that no replica gets an empty share of one.

    TensorFlow 2.21's CPU convolution fails on an empty batch ("input depth must be evenly divisible
    by filter depth"), and a last batch of 1 slice split over 2 replicas leaves one empty. A
    repeated stream is cut into full batches across its passes (no slice is lost); a single pass
    drops its last, partial batch.
    """
    import tensorflow as tf

    if repeated:
        return dataset.rebatch(batch, drop_remainder=True)
    return dataset.filter(lambda x, y: tf.shape(x)[0] == batch)


def shard_by_data(dataset):
    """Split a generator-fed dataset across workers by element (it has no files to split by)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def model_summary(model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line), line_length=120)
    return "\n".join(lines) + "\n"


def trim_history(path: Path, epochs: int) -> None:
    """Keep the rows of the first ``epochs`` epochs of the history CSV at ``path`` (atomically)."""
    import csv
    import io

    if not path.exists():
        return
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        fields = reader.fieldnames
    kept = [row for row in rows if row.get("epoch") and int(row["epoch"]) < epochs]
    if len(kept) == len(rows) or not fields:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(kept)
    write_text(path, buffer.getvalue())


def epochs_logged(run_dir: Path) -> int:
    import csv

    path = run_dir / HISTORY_FILE
    if not path.exists():
        return 0
    with path.open(newline="") as f:
        return len({row["epoch"] for row in csv.DictReader(f) if row.get("epoch")})
