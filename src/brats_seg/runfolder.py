"""The run folder: the one place that knows its files, its status, its config, its split and its
model.

A run counts as a result only when ``run.json`` says ``completed``; ``metrics.json`` is written
before that, so a crash in between leaves a run that is not completed and is evaluated again on the
next start. Every other module asks this one for a run folder's paths instead of spelling file names
itself, finds runs with ``find_run_dirs`` and uses an existing run only through ``open_run``, which
refuses a run that is not completed, whose config.yaml was edited or whose checkpoint is damaged.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import platform
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brats_seg.atomic import write_json
from brats_seg.config import with_data_defaults
from brats_seg.errors import ConfigError, RunError, first_line

log = logging.getLogger(__name__)

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
BEST_STATE_FILE = "best.json"  # in CHECKPOINT_DIR: the monitored value of best.keras
BACKUP_STATE_FILE = "backup.json"  # in BACKUP_DIR: which weights file is the complete backup
BACKUP_DIR = "backup"
TENSORBOARD_DIR = "tensorboard"
PLOT_DIR = "plots"
# Where `brats-seg export run=RUN` and `brats-seg view run=RUN` write when no out= is given.
EXPORT_DIR = "export"
VIEW_DIR = "view"
# The post-processing chosen on the run's validation patients (evaluate tune_postprocess=true).
POSTPROCESS_FILE = "postprocess.json"
# The softmax temperature fitted on the validation patients (evaluate.calibration), and what it was
# fitted on (inference/calibration.py).
CALIBRATION_FILE = "calibration.json"

# What a fresh start of a run removes (forced retrain, or a folder whose configuration was never
# recorded).
RESULT_FILES = (
    HISTORY_FILE,
    METRICS_FILE,
    METRICS_MD_FILE,
    SPLIT_FILE,
    STATUS_FILE,
    SUMMARY_FILE,
    POSTPROCESS_FILE,
    CALIBRATION_FILE,
)
# The export and the view of the model trained before go with it.
RESULT_DIRS = (BACKUP_DIR, CHECKPOINT_DIR, TENSORBOARD_DIR, PLOT_DIR, EXPORT_DIR, VIEW_DIR)

RUNNING, COMPLETED, FAILED = "running", "completed", "failed"
# Stopped by SIGTERM or Ctrl-C: the same command resumes it.
INTERRUPTED = "interrupted"
NOT_STARTED = "not started"  # a Hydra job folder whose run never wrote run.json
EDITED = "config edited"  # completed, but config.yaml no longer matches its recorded hash

# Keys that change how a run is shown or where it is written, not what it computes.
RESULT_NEUTRAL_KEYS = (
    "paths",
    "trainer.verbose",
    "trainer.force",
    "trainer.device",
    "trainer.job_gpus",
    "data.workers",
    # the slice cache is keyed by what it holds: where it lies changes nothing
    "data.cache_dir",
    "evaluate.overlays",
    "run_group",
    "sweep_name",
    "logger",
    "tune",
)


def flatten(node: Any, prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """The leaves of nested dicts by their joined keys (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``)."""
    if not isinstance(node, dict):
        return {prefix: node}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat.update(flatten(value, f"{prefix}{sep}{key}" if prefix else str(key), sep))
    return flat


def config_difference(
    a: dict[str, Any], b: dict[str, Any], varying: tuple[str, ...]
) -> tuple[str, Any, Any] | None:
    """The first key that changes results, outside ``varying`` (dotted keys or their parents), whose
    value differs between two run configs, with both values; None when they agree. A key only one
    of them has (a run of an older version) is not compared."""
    flat_a, flat_b = flatten(result_config(a)), flatten(result_config(b))
    for key in sorted(flat_a.keys() & flat_b.keys()):
        if any(key == v or key.startswith(v + ".") for v in varying):
            continue
        if flat_a[key] != flat_b[key]:
            return key, flat_a[key], flat_b[key]
    return None


def now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


# Runs trained before data.cache_dir joined RESULT_NEUTRAL_KEYS recorded hashes that include it.
_LEGACY_HASHED_KEYS = ("data.cache_dir",)


def result_config(cfg_container: dict, neutral: tuple[str, ...] = RESULT_NEUTRAL_KEYS) -> dict:
    """A plain copy of a resolved configuration without the keys that do not change results."""
    cfg = json.loads(json.dumps(cfg_container, default=str))
    for dotted in neutral:
        node, *rest = dotted.split(".")
        parent = cfg
        while rest and isinstance(parent.get(node), dict):
            parent, node, rest = parent[node], rest[0], rest[1:]
        if not rest and isinstance(parent, dict):
            parent.pop(node, None)
    return cfg


def config_hash(cfg_container: dict, neutral: tuple[str, ...] = RESULT_NEUTRAL_KEYS) -> str:
    """Hash of the resolved configuration, without the keys that do not change results."""
    cfg = result_config(cfg_container, neutral)
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def matches_recorded_hash(cfg_container: dict, recorded: str | None) -> bool:
    """Whether a configuration is the one a run recorded: its hash, or the hash an older version
    computed (with keys since found not to change results)."""
    legacy = tuple(k for k in RESULT_NEUTRAL_KEYS if k not in _LEGACY_HASHED_KEYS)
    return recorded in (config_hash(cfg_container), config_hash(cfg_container, legacy))


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


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Run folders in ``paths``: folders with a run.json written by brats-seg train, or a Hydra job
    folder (.hydra/config.yaml) that never got that far."""
    found: set[Path] = set()
    for root in paths:
        root = Path(root)
        if not root.is_dir():
            raise ConfigError(f"{root} is not a folder")
        for marker in (STATUS_FILE, CONFIG_FILE, HYDRA_CONFIG_FILE):
            for hit in root.rglob(marker):
                run_dir = hit.parent.parent if marker == HYDRA_CONFIG_FILE else hit.parent
                if (run_dir / HYDRA_CONFIG_FILE).exists() or (run_dir / STATUS_FILE).exists():
                    found.add(run_dir)
    return sorted(found)


def find_completed_runs(root: Path) -> list[Path]:
    """The completed runs under ``root`` (a sweep folder)."""
    return [p for p in find_run_dirs([root]) if RunFolder(p).status == COMPLETED]


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
    def history_path(self) -> Path:
        return self.path / HISTORY_FILE

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_FILE

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def plot_dir(self) -> Path:
        return self.path / PLOT_DIR

    @property
    def calibration_path(self) -> Path:
        return self.path / CALIBRATION_FILE

    # -- status ---------------------------------------------------------------------------------
    def read(self) -> dict[str, Any] | None:
        if not self.status_path.exists():
            return None
        try:
            info = json.loads(self.status_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RunError(f"{self.status_path}: damaged status file, not JSON ({err})") from err
        if not isinstance(info, dict):
            raise RunError(
                f"{self.status_path}: damaged status file, a JSON {type(info).__name__} "
                "where an object is expected"
            )
        return info

    @property
    def status(self) -> str | None:
        info = self.read()
        return info.get("status") if info else None

    def is_live(self) -> bool:
        """True while a live brats-seg process holds the run folder's lock (the OS releases it
        when a process dies)."""
        from filelock import FileLock, Timeout

        if not self.lock_path.exists():
            return False
        lock = FileLock(str(self.lock_path))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return True
        lock.release()
        return False

    def effective_status(self) -> str:
        """The status as a reader should take it: ``running`` with no live process holding the
        lock is ``interrupted`` (killed, or lost its node); no run.json is ``not started``."""
        status = self.status or NOT_STARTED
        if status == RUNNING and not self.is_live():
            return INTERRUPTED
        return status

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

    def interrupt(self, why: str) -> dict[str, Any]:
        return self.update(status=INTERRUPTED, ended=now(), error=why)

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

        path = self.require(CONFIG_FILE)
        try:
            return OmegaConf.load(path)
        except Exception as err:  # noqa: BLE001  (yaml and OmegaConf raise many kinds)
            raise RunError(f"{path}: damaged config file, not YAML ({first_line(err)})") from err

    def read_config_dict(self) -> dict[str, Any]:
        """The run's config as a plain dict, unresolved: config.yaml, or Hydra's copy for a job
        that never wrote one, or {} when neither exists."""
        from omegaconf import OmegaConf

        for path in (self.config_path, self.path / HYDRA_CONFIG_FILE):
            if path.exists():
                try:
                    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)  # type: ignore[return-value]
                except Exception as err:  # noqa: BLE001
                    raise RunError(
                        f"{path}: damaged config file, not YAML ({first_line(err)})"
                    ) from err
        return {}

    def config_edited(self) -> str | None:
        """How config.yaml differs from the configuration the run was trained with (the hash
        run.json recorded), or None when it matches or nothing was recorded."""
        from omegaconf import OmegaConf

        recorded = (self.read() or {}).get("config_hash")
        if recorded is None:
            return None
        cfg = OmegaConf.to_container(self.read_config(), resolve=True, enum_to_str=True)
        actual = config_hash(cfg)
        if matches_recorded_hash(cfg, recorded):
            return None
        return (
            f"edited after the run was trained (config hash {actual}, "
            f"{STATUS_FILE} records {recorded})"
        )

    def read_split(self) -> dict[str, list[str]]:
        return json.loads(self.require(SPLIT_FILE).read_text())

    def read_metrics(self) -> dict[str, Any]:
        path = self.require(METRICS_FILE)
        try:
            return json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RunError(f"{path}: damaged metrics file, not JSON ({err})") from err

    @property
    def postprocess_path(self) -> Path:
        return self.path / POSTPROCESS_FILE

    def read_postprocess(self) -> dict[str, Any] | None:
        """The tuned post-processing record (see inference/postprocess_tuning.py), or None."""
        path = self.postprocess_path
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RunError(f"{path}: damaged post-processing file, not JSON ({err})") from err
        if not isinstance(record, dict) or not isinstance(record.get("settings"), dict):
            raise RunError(f"{path}: damaged post-processing file, no settings object")
        return record

    def write_postprocess(self, record: dict[str, Any]) -> Path:
        write_json(self.postprocess_path, record)
        return self.postprocess_path

    def read_calibration(self) -> dict[str, Any]:
        """The run's fitted temperature record; a RunError when it has none or it is damaged."""
        path = self.calibration_path
        if not path.exists():
            raise RunError(
                f"{self.path}: the run has no fitted temperature (no {CALIBRATION_FILE}); "
                f"brats-seg evaluate run={self.path} calibration=true fits one"
            )
        try:
            record = json.loads(path.read_text())
            temperature = float(record["temperature"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as err:
            raise RunError(f"{path}: damaged calibration file ({first_line(err)})") from err
        if not temperature > 0:
            raise RunError(f"{path}: damaged calibration file (temperature {temperature})")
        return record

    def read_history(self) -> dict[str, list[float]]:
        """The columns of history.csv ({} when the run logged no epoch)."""
        from brats_seg.viz.plots import read_history

        return read_history(self.history_path)

    def checkpoint_path(self) -> Path | None:
        """The run's best checkpoint, or its last one, or None."""
        for name in (BEST_CHECKPOINT, LAST_CHECKPOINT):
            path = self.checkpoint_dir / name
            if path.exists():
                return path
        return None

    def load_best_model(self):
        """The run's best checkpoint (or its last one): for the training job, which knows the
        state of the run it is finishing. Every other user goes through ``open_run``."""
        path = self.checkpoint_path()
        if path is None:
            raise RunError(
                f"{self.path}: no model checkpoint in {self.checkpoint_dir}; "
                "the run never finished an epoch"
            )
        return load_checkpoint(path)


def checkpoint_damage(path: Path) -> str | None:
    """What is wrong with a .keras file (a zip archive of config.json and the weights), or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        size = path.stat().st_size if path.exists() else 0
        return f"not a complete Keras archive ({size} bytes; {first_line(err)})"
    if bad is not None:
        return f"its member {bad} fails its checksum"
    missing = {"config.json", "model.weights.h5"} - names
    if missing:
        return f"the archive lacks {', '.join(sorted(missing))}"
    return None


def load_checkpoint(path: Path):
    """A Keras model from ``path``; a damaged file is a RunError naming it and the damage."""
    import keras

    import brats_seg.losses  # noqa: F401  (registers the loss and metric classes)
    import brats_seg.models  # noqa: F401  (registers custom layers, if any)

    damage = checkpoint_damage(path)
    if damage is None:
        try:
            return keras.models.load_model(path)
        except Exception as err:  # noqa: BLE001  (Keras raises many kinds for a bad file)
            damage = f"Keras cannot load it ({type(err).__name__}: {first_line(err)})"
    raise RunError(f"{path}: damaged checkpoint, {damage}")


@dataclass
class OpenedRun:
    """A run checked for use: its status, its verified config and the checkpoint to load."""

    path: Path
    status: str
    cfg: Any  # the run's config (an OmegaConf DictConfig)
    checkpoint: Path
    allow_incomplete: bool = False
    # what differs from a completed run's best model, said once in the output and recorded
    notes: list[str] = field(default_factory=list)

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.path)

    def load_model(self):
        return load_checkpoint(self.checkpoint)

    def record(self) -> dict[str, Any]:
        """What an output written from this run records about it."""
        return {
            "run": str(self.path.resolve()),
            "status": self.status,
            "checkpoint": self.checkpoint.name,
            "allow_incomplete": self.allow_incomplete,
            "notes": list(self.notes),
        }


def open_run(
    run_dir: str | Path, *, allow_incomplete: bool = False, use_last_checkpoint: bool = False
) -> OpenedRun:
    """The one way to use an existing run (predict, evaluate, export, ensembles, reports).

    Refuses, in one line naming the file: a run that is not ``completed`` (unless
    ``allow_incomplete``), a config.yaml that no longer matches the hash run.json recorded when
    the run was trained, and a missing or damaged checkpoint. ``best.keras`` is used;
    ``last.keras`` only with ``use_last_checkpoint``. Each allowance is in ``notes``.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise RunError(f"{path}: no such run folder")
    folder = RunFolder(path)
    info = folder.read()
    if info is None and not folder.config_path.exists():
        raise RunError(f"{path}: not a brats-seg run folder (no {STATUS_FILE}, no {CONFIG_FILE})")
    status = folder.effective_status()
    notes: list[str] = []
    if status != COMPLETED:
        if not allow_incomplete:
            raise RunError(f"{path}: the run is {_status_words(status, info)}; {_remedy(status)}")
        notes.append(f"the run is {_status_words(status, info)}, used with allow_incomplete=true")
    cfg = folder.read_config()
    if (info or {}).get("config_hash") is None:
        if not allow_incomplete:
            raise RunError(f"{folder.status_path}: records no config_hash to verify {CONFIG_FILE}")
        notes.append(f"{CONFIG_FILE} not verified: {STATUS_FILE} records no config hash")
    else:
        edited = folder.config_edited()
        if edited:
            raise RunError(f"{folder.config_path}: {edited}; restore it, or train a new run")
    checkpoint = _pick_checkpoint(folder, use_last_checkpoint)
    if use_last_checkpoint:
        notes.append(
            f"used {LAST_CHECKPOINT} (use_last_checkpoint=true), the model of the last epoch "
            "trained, not the best one"
        )
    damage = checkpoint_damage(checkpoint)
    if damage:
        raise RunError(f"{checkpoint}: damaged checkpoint, {damage}")
    for note in notes:
        log.warning("%s: %s", path, note)
    return OpenedRun(path, status, with_data_defaults(cfg), checkpoint, allow_incomplete, notes)


def open_runs(run_dirs: list[Path], **options: bool) -> list[OpenedRun]:
    """``open_run`` for each run of an ensemble, every check done before any model is loaded."""
    return [open_run(r, **options) for r in run_dirs]


def _status_words(status: str, info: dict[str, Any] | None) -> str:
    error = (info or {}).get("error")
    if status == RUNNING:
        return "running (a live process is training it)"
    if status == INTERRUPTED and (info or {}).get("status") == RUNNING:
        return f"{INTERRUPTED} ({STATUS_FILE} says running, but no process trains it: killed)"
    return f"{status} ({error})" if error else status


def _remedy(status: str) -> str:
    if status == RUNNING:
        return "wait until it completes, or pass allow_incomplete=true to use it as it is"
    if status in (INTERRUPTED, NOT_STARTED):
        return (
            "resume it with the train command that started it, "
            "or pass allow_incomplete=true to use it as it is"
        )
    return "pass allow_incomplete=true to use it anyway (the output records it)"


def _pick_checkpoint(folder: RunFolder, use_last: bool) -> Path:
    best = folder.checkpoint_dir / BEST_CHECKPOINT
    last = folder.checkpoint_dir / LAST_CHECKPOINT
    if use_last:
        if not last.exists():
            raise RunError(f"{folder.path}: no {LAST_CHECKPOINT} in {folder.checkpoint_dir}")
        return last
    if best.exists():
        return best
    if last.exists():
        raise RunError(
            f"{folder.path}: no {BEST_CHECKPOINT} in {folder.checkpoint_dir}; "
            f"pass use_last_checkpoint=true to use {LAST_CHECKPOINT}, the last epoch's model"
        )
    raise RunError(
        f"{folder.path}: no model checkpoint in {folder.checkpoint_dir}; "
        "the run never finished an epoch"
    )
