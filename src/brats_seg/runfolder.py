"""The run folder: the one place that knows its files, its status, its config, its split and its
model.

A run counts as a result only when ``run.json`` says ``completed``; ``metrics.json`` is written
before that, so a crash in between leaves a run that is not completed and is evaluated again on the
next start. Every other module asks this one for a run folder's paths instead of spelling file names
itself.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
from pathlib import Path
from typing import Any

from brats_seg.atomic import write_json
from brats_seg.errors import RunError

STATUS_FILE = "run.json"
CONFIG_FILE = "config.yaml"
HYDRA_CONFIG_FILE = ".hydra/config.yaml"
SPLIT_FILE = "split.json"
METRICS_FILE = "metrics.json"
METRICS_MD_FILE = "metrics.md"
HISTORY_FILE = "history.csv"
SUMMARY_FILE = "model.txt"
LOCK_FILE = ".run.lock"
LOG_FILE = "train.log"
CHECKPOINT_DIR = "checkpoints"
BEST_CHECKPOINT = "best.keras"
LAST_CHECKPOINT = "last.keras"
BACKUP_DIR = "backup"
TENSORBOARD_DIR = "tensorboard"
PLOT_DIR = "plots"

# What a fresh start of a run removes (forced retrain, or a folder whose configuration was never
# recorded).
RESULT_FILES = (HISTORY_FILE, METRICS_FILE, METRICS_MD_FILE, SPLIT_FILE, STATUS_FILE, SUMMARY_FILE)
RESULT_DIRS = (BACKUP_DIR, CHECKPOINT_DIR, TENSORBOARD_DIR, PLOT_DIR)

RUNNING, COMPLETED, FAILED = "running", "completed", "failed"

# Keys that change how a run is shown or where it is written, not what it computes.
_HASH_EXCLUDED = (
    "paths",
    "trainer.verbose",
    "trainer.force",
    "trainer.device",
    "trainer.job_gpus",
    "data.workers",
    "evaluate.overlays",
    "run_group",
    "sweep_name",
)


def now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def config_hash(cfg_container: dict) -> str:
    """Hash of the resolved configuration, without the keys that do not change results."""
    cfg = json.loads(json.dumps(cfg_container, default=str))
    for dotted in _HASH_EXCLUDED:
        node, *rest = dotted.split(".")
        parent = cfg
        while rest and isinstance(parent.get(node), dict):
            parent, node, rest = parent[node], rest[0], rest[1:]
        if not rest and isinstance(parent, dict):
            parent.pop(node, None)
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def versions() -> dict[str, str]:
    import keras
    import numpy
    import tensorflow as tf

    from brats_seg import __version__

    return {
        "brats_seg": __version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
    }


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` looks like a brats-seg run folder (it has a status file or a recorded
    config)."""
    path = Path(path)
    return any((path / name).exists() for name in (STATUS_FILE, CONFIG_FILE, HYDRA_CONFIG_FILE))


class RunFolder:
    """One run folder: paths of its files, its status file, and readers of what a finished run
    left."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def status_path(self) -> Path:
        return self.path / STATUS_FILE

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def plot_dir(self) -> Path:
        return self.path / PLOT_DIR

    # -- status ---------------------------------------------------------------------------------
    def read(self) -> dict[str, Any] | None:
        if not self.status_path.exists():
            return None
        try:
            return json.loads(self.status_path.read_text())
        except json.JSONDecodeError as err:
            raise RunError(f"{self.status_path}: unreadable status file ({err})") from err

    @property
    def status(self) -> str | None:
        info = self.read()
        return info.get("status") if info else None

    def update(self, **fields: Any) -> dict[str, Any]:
        info = self.read() or {}
        info.update(fields)
        write_json(self.status_path, info)
        return info

    def start(self, **fields: Any) -> dict[str, Any]:
        previous = self.read() or {}
        attempts = int(previous.get("attempts", 0)) + 1
        return self.update(
            status=RUNNING, started=now(), ended=None, error=None, attempts=attempts, **fields
        )

    def complete(self, **fields: Any) -> dict[str, Any]:
        return self.update(status=COMPLETED, ended=now(), **fields)

    def fail(self, error: str) -> dict[str, Any]:
        return self.update(status=FAILED, ended=now(), error=error)

    # -- what a run left ------------------------------------------------------------------------
    def require(self, name: str, what: str = "") -> Path:
        """``path/name``, or a one-line RunError saying this is not (yet) a usable run folder."""
        path = self.path / name
        if not path.exists():
            hint = f", {what}" if what else ""
            raise RunError(f"{self.path}: not a brats-seg run folder (no {name}{hint})")
        return path

    def read_config(self):
        """The run's resolved configuration (an OmegaConf DictConfig)."""
        from omegaconf import OmegaConf

        return OmegaConf.load(self.require(CONFIG_FILE))

    def read_split(self) -> dict[str, list[str]]:
        return json.loads(self.require(SPLIT_FILE).read_text())

    def read_metrics(self) -> dict[str, Any]:
        return json.loads(self.require(METRICS_FILE).read_text())

    def checkpoint_path(self) -> Path | None:
        """The run's best checkpoint, or its last one, or None."""
        for name in (BEST_CHECKPOINT, LAST_CHECKPOINT):
            path = self.checkpoint_dir / name
            if path.exists():
                return path
        return None

    def load_best_model(self):
        """The run's best checkpoint (or its last one), loaded without custom_objects."""
        import keras

        import brats_seg.losses  # noqa: F401  (registers the loss and metric classes)
        import brats_seg.models  # noqa: F401  (registers custom layers, if any)

        path = self.checkpoint_path()
        if path is None:
            raise RunError(
                f"{self.path}: no model checkpoint in {self.checkpoint_dir}; "
                "the run never finished an epoch"
            )
        return keras.models.load_model(path)
