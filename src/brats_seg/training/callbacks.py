"""Keras callbacks that keep a run's work safe: atomic best/last checkpoints, a kill-safe backup, a
NaN guard.

In a multi-worker run every worker saves (saving may read variables collectively, so all must take
part), but only the chief saves into the run folder: the others write into a scratch folder of their
own and remove what they wrote (Keras' multi-worker pattern). Every worker reads its state from the
chief's files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import keras

from brats_seg.atomic import write_json
from brats_seg.runfolder import (
    BACKUP_STATE_FILE,
    BEST_CHECKPOINT,
    BEST_STATE_FILE,
    LAST_CHECKPOINT,
    RunFolder,
)

log = logging.getLogger(__name__)


class NanGuard(keras.callbacks.Callback):
    """Stop training at the first non-finite loss and remember that it happened."""

    def __init__(self):
        super().__init__()
        self.nan_at: tuple[int, int] | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.nan_at = (self._epoch, batch)
            self.model.stop_training = True


class BestAndLastCheckpoint(keras.callbacks.Callback):
    """Save ``last.keras`` after every epoch and ``best.keras`` when ``monitor`` improves.

    ``monitor=None`` (a run without validation patients): every epoch counts as the best, so
    ``best.keras`` is the latest model.

    Files are written under a temporary name and renamed, so a kill never leaves a half-written
    model. The best value so far lives in ``best.json``, so a resumed run keeps comparing against
    the epochs before the interruption.
    """

    def __init__(
        self,
        folder: str | Path,
        monitor: str | None = "val_loss",
        mode: str = "min",
        save_last: bool = True,
        write_folder: str | Path | None = None,
    ):
        super().__init__()
        self.save_last = save_last
        self.folder = Path(folder)
        # A non-chief worker: reads the chief's best.json in ``folder``, saves into
        # ``write_folder`` and removes it.
        self.write_folder = Path(write_folder) if write_folder is not None else None
        self.monitor = monitor
        self.mode = mode
        self.best: float | None = None
        # True while the model's current weights are those in best.keras (the latest epoch was the
        # best).
        self.best_is_latest = False

    @property
    def best_path(self) -> Path:
        return self.folder / BEST_CHECKPOINT

    @property
    def last_path(self) -> Path:
        return self.folder / LAST_CHECKPOINT

    @property
    def _state_path(self) -> Path:
        return self.folder / BEST_STATE_FILE

    def on_train_begin(self, logs=None):
        if self.write_folder is None:
            self.folder.mkdir(parents=True, exist_ok=True)
        if self._state_path.exists() and self.best_path.exists():
            self.best = json.loads(self._state_path.read_text()).get("value")

    def _improved(self, value: float) -> bool:
        if self.monitor is None:
            return True
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def _save(self, path: Path) -> None:
        if self.write_folder is not None:
            self.write_folder.mkdir(parents=True, exist_ok=True)
            self.model.save(self.write_folder / path.name)
            shutil.rmtree(self.write_folder, ignore_errors=True)
            return
        tmp = path.with_name(f".{path.stem}.tmp.keras")
        self.model.save(tmp)
        os.replace(tmp, path)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        value = logs.get(self.monitor, logs.get("loss")) if self.monitor else float(epoch)
        self.best_is_latest = False
        if value is not None and self._improved(float(value)):
            self.best = float(value)
            self._save(self.best_path)
            self.best_is_latest = True
            if self.write_folder is None:
                state = {"monitor": self.monitor, "value": self.best, "epoch": epoch + 1}
                write_json(self._state_path, state)
        if self.save_last:
            self._save(self.last_path)


class RunBackup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore, safe against a kill at any moment and shared by the workers of a
    run.

    Each epoch's state is a weights file named after the epoch; ``backup.json`` then names it and is
    swapped in atomically, so the backup is always one complete state. Every worker restores from
    ``backup_dir`` (the chief's); a non-chief worker writes its state into ``write_dir`` and removes
    it again.
    """

    STATE_FILE = BACKUP_STATE_FILE

    def __init__(self, backup_dir: str | Path, write_dir: str | Path | None = None):
        super().__init__(str(backup_dir))
        self.folder = Path(backup_dir)
        self.write_dir = Path(write_dir) if write_dir is not None else None
        self.restored_epoch: int | None = None

    def _load_model(self):
        state_path = self.folder / self.STATE_FILE
        if not state_path.exists():
            super()._load_model()  # a backup in Keras' own layout (or none at all)
            return
        state = json.loads(state_path.read_text())
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self.folder / state["weights"])
        self.model._initial_epoch = int(state["epoch"])  # how Keras' own callback resumes fit()
        self.restored_epoch = int(state["epoch"])
        log.info("resuming from the backup after epoch %d (%s)", self.restored_epoch, self.folder)

    def on_epoch_end(self, epoch, logs=None):
        # A non-finite epoch is not a state worth resuming from.
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            return
        super().on_epoch_end(epoch, logs)

    def _save_model(self):
        target = self.write_dir or self.folder
        target.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{self._current_epoch}.weights.h5"
        tmp = target / f".tmp-{name}"
        self.model.save_weights(str(tmp), overwrite=True)
        os.replace(tmp, target / name)
        write_json(target / self.STATE_FILE, {"epoch": self._current_epoch, "weights": name})
        for old in target.glob("epoch-*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)
        if self.write_dir is not None:
            shutil.rmtree(self.write_dir, ignore_errors=True)

    def on_train_end(self, logs=None):
        if self.write_dir is None:
            shutil.rmtree(self.folder, ignore_errors=True)


def backed_up_epoch(backup_dir: str | Path) -> int:
    """The number of epochs the backup in ``backup_dir`` holds (0 when there is none)."""
    state_path = Path(backup_dir) / RunBackup.STATE_FILE
    if not state_path.exists():
        return 0
    return int(json.loads(state_path.read_text())["epoch"])


class Throughput(keras.callbacks.Callback):
    """Training slices per second of each epoch, validation excluded (``last``: the latest), and
    each epoch's wall seconds, validation included.

    With ``folder`` (the chief's run folder), every epoch's seconds go into run.json's
    ``epoch_seconds`` (index: the epoch) as it ends, before its backup: a resumed run keeps the
    seconds of the epochs it resumes from, and an epoch trained again after a kill replaces the
    seconds of the attempt whose work was lost.
    """

    def __init__(self, global_batch: int, folder: RunFolder | None = None):
        super().__init__()
        self.global_batch = global_batch
        self.folder = folder
        self.last: float | None = None
        self.epoch_seconds: dict[int, float] = {}
        self._start = 0.0
        self._batches = 0
        self._train_seconds: float | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._batches, self._train_seconds = time.perf_counter(), 0, None

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1

    def on_test_begin(self, logs=None):
        if self._train_seconds is None:
            self._train_seconds = time.perf_counter() - self._start

    def on_epoch_end(self, epoch, logs=None):
        epoch_seconds = time.perf_counter() - self._start
        seconds = self._train_seconds if self._train_seconds is not None else epoch_seconds
        if seconds > 0 and self._batches:
            self.last = self._batches * self.global_batch / seconds
        self.epoch_seconds[epoch] = epoch_seconds
        if self.folder is not None:
            recorded = list((self.folder.read() or {}).get("epoch_seconds") or [])[:epoch]
            recorded += [None] * (epoch - len(recorded)) + [round(epoch_seconds, 3)]
            self.folder.update(epoch_seconds=recorded)
