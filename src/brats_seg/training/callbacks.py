"""Keras callbacks that keep a run's work safe: atomic best/last checkpoints and a NaN guard."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import keras


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

    ``monitor=None`` (a run without validation patients): every epoch counts as the best, so ``best.keras`` is
    the latest model.

    Files are written under a temporary name and renamed, so a kill never leaves a half-written model. The best value
    so far lives in ``best.json``, so a resumed run keeps comparing against the epochs before the interruption.
    """

    def __init__(self, folder: str | Path, monitor: str | None = "val_loss", mode: str = "min",
                 save_last: bool = True):
        super().__init__()
        self.save_last = save_last
        self.folder = Path(folder)
        self.monitor = monitor
        self.mode = mode
        self.best: float | None = None
        # True while the model's current weights are those in best.keras (the latest epoch was the best).
        self.best_is_latest = False

    @property
    def best_path(self) -> Path:
        return self.folder / "best.keras"

    @property
    def last_path(self) -> Path:
        return self.folder / "last.keras"

    @property
    def _state_path(self) -> Path:
        return self.folder / "best.json"

    def on_train_begin(self, logs=None):
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
            tmp = self._state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"monitor": self.monitor, "value": self.best, "epoch": epoch + 1}))
            os.replace(tmp, self._state_path)
        if self.save_last:
            self._save(self.last_path)
