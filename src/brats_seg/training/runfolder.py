"""The run folder's status file: running, completed or failed, written atomically.

A run counts as a result only when ``run.json`` says ``completed``; ``metrics.json`` is written before that, so a
crash in between leaves a run that is not completed and is evaluated again on the next start.
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
RUNNING, COMPLETED, FAILED = "running", "completed", "failed"

# Keys that change how a run is shown or where it is written, not what it computes.
_HASH_EXCLUDED = ("paths", "trainer.verbose", "trainer.force", "data.workers", "evaluate.overlays", "run_group", "sweep_name")


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


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def status_path(self) -> Path:
        return self.path / STATUS_FILE

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
        return self.update(status=RUNNING, started=now(), ended=None, error=None, attempts=attempts, **fields)

    def complete(self, **fields: Any) -> dict[str, Any]:
        return self.update(status=COMPLETED, ended=now(), **fields)

    def fail(self, error: str) -> dict[str, Any]:
        return self.update(status=FAILED, ended=now(), error=error)
