"""The backup and the history agree after a kill: rows the backup does not cover are dropped, and a
non-finite epoch is never backed up."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from brats_seg.training.callbacks import RunBackup, backed_up_epoch  # noqa: E402
from brats_seg.training.fit import trim_history  # noqa: E402


def rows(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


class KillAfterEpoch(keras.callbacks.Callback):
    """Stands for a SIGKILL that lands after the history row of ``epoch`` and before its backup."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def tiny_model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_rows_after_the_backup_are_dropped_and_the_rest_kept(tmp_path):
    x, y = np.ones((8, 4), "float32"), np.zeros((8, 1), "float32")
    history, backup = tmp_path / "history.csv", tmp_path / "backup"
    callbacks = [keras.callbacks.CSVLogger(str(history)), KillAfterEpoch(2), RunBackup(backup)]
    with pytest.raises(KeyboardInterrupt):
        tiny_model().fit(x, y, epochs=5, verbose=0, callbacks=callbacks)
    before = rows(history)
    assert [r["epoch"] for r in before] == ["0", "1", "2"]
    assert backed_up_epoch(backup) == 2  # epochs 0 and 1 are backed up, epoch 2 is not

    trim_history(history, backed_up_epoch(backup))
    assert rows(history) == before[:2]

    resumed = [keras.callbacks.CSVLogger(str(history), append=True), RunBackup(backup)]
    tiny_model().fit(x, y, epochs=5, verbose=0, callbacks=resumed)
    assert [r["epoch"] for r in rows(history)] == ["0", "1", "2", "3", "4"]


def test_no_backup_means_no_epoch_and_a_missing_history_is_left_alone(tmp_path):
    assert backed_up_epoch(tmp_path / "backup") == 0
    trim_history(tmp_path / "history.csv", 0)
    assert not (tmp_path / "history.csv").exists()


def test_an_epoch_with_a_non_finite_loss_is_not_backed_up(tmp_path):
    backup = RunBackup(tmp_path / "backup")
    backup.set_model(tiny_model())
    backup.on_train_begin()
    backup.on_epoch_begin(0)
    backup.on_epoch_end(0, {"loss": 0.5})
    assert backed_up_epoch(tmp_path / "backup") == 1
    backup.on_epoch_begin(1)
    backup.on_epoch_end(1, {"loss": math.nan})
    assert backed_up_epoch(tmp_path / "backup") == 1
