"""Experiment tracking in MLflow (``logger=mlflow``): one MLflow run per run folder.

The run logs the flattened resolved config as params, each epoch's row of history.csv as metrics
(step = the epoch, counted from 0 as in history.csv), the test metrics of metrics.json under
``test/``, tags that say what ran where, and metrics.md, metrics.json, config.yaml and the plots as
artifacts. The MLflow run's id is recorded in run.json, so a resumed run continues the same MLflow
run. MLflow is an optional extra: it is imported only here, and only once a tracked run starts.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import json
import logging
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from brats_seg.config_schema import to_plain
from brats_seg.errors import ConfigError, RunError, first_line
from brats_seg.runfolder import (
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    METRICS_MD_FILE,
    PLOT_DIR,
    RunFolder,
    flatten,
)

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'brats-seg[mlflow]'"
# The default store: an SQLite file and an artifact folder under paths.output_root.
SQLITE_FILE = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"
# run.json's record of the MLflow run: {"tracking_uri", "experiment_id", "run_id"}.
RUN_RECORD_KEY = "mlflow"
# metrics.json's nodes logged as test metrics (numbers only, nested keys joined by "/").
RESULT_NODES = ("col_ave", "col_ave_tumour", "col_ave_study", "regions", "lesionwise")
RESULT_PREFIX = "test/"
# How long the start of a run waits for a tracking server to answer.
SERVER_TIMEOUT_S = 10
# MLflow's limits on one request (mlflow.utils.validation).
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
_MAX_PARAM_LENGTH = 6000


def enabled(cfg) -> bool:
    logger = cfg.get("logger")
    return logger is not None and str(logger.name) == "mlflow"


def mlflow_installed() -> bool:
    try:
        return importlib.util.find_spec("mlflow") is not None
    except ValueError:  # sys.modules["mlflow"] is None: imports of it are blocked
        return False


def check_available(cfg) -> None:
    """The option check of ``logger=mlflow`` (before any work): MLflow must be installed, and a
    tracking server given by address must answer."""
    if not enabled(cfg):
        return
    if not mlflow_installed():
        raise ConfigError(f"logger=mlflow: MLflow is not installed; {INSTALL_HINT}")
    _check_reachable(tracking_uri(cfg))


# ---------------------------------------------------------------------------------- naming


def tracking_uri(cfg) -> str:
    """``logger.tracking_uri``, or the SQLite store under ``paths.output_root`` when it is null."""
    given = cfg.logger.get("tracking_uri")
    if given:
        return str(given)
    return "sqlite:///" + str(_output_root(cfg) / SQLITE_FILE)


def _output_root(cfg) -> Path:
    return Path(cfg.paths.output_root).resolve()


def experiment_name(cfg) -> str:
    """``logger.experiment_name``, else the sweep's name in a sweep (its runs share one
    experiment), else the run group."""
    if cfg.logger.get("experiment_name"):
        return str(cfg.logger.experiment_name)
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    return str(cfg.sweep_name if multirun else cfg.run_group)


def config_params(cfg) -> dict[str, str]:
    """The resolved config as MLflow params: dotted keys, lists and null as JSON text."""
    params = {}
    for key, value in flatten(to_plain(cfg)).items():
        text = value if isinstance(value, str) else json.dumps(value)
        if len(text) > _MAX_PARAM_LENGTH:  # e.g. a long data.cases list
            text = text[: _MAX_PARAM_LENGTH - 3] + "..."
        params[key] = text
    return params


def result_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The test metrics of a metrics.json as MLflow metrics: ``test/per_class/<label>/<metric>``
    (a label's "/" as "-"), ``test/col_ave/f1``, ``test/regions/WT/dice_mean``,
    ``test/lesionwise/<convention>/<region>/<metric>``."""
    out: dict[str, float] = {}
    per_class = metrics.get("per_class") or {}
    labels = [str(label).replace("/", "-") for label in per_class.get("labels") or []]
    for name, values in per_class.items():
        if name != "labels" and isinstance(values, list):
            for label, value in zip(labels, values, strict=False):
                if _is_number(value):
                    out[f"{RESULT_PREFIX}per_class/{label}/{name}"] = float(value)
    for node in RESULT_NODES:
        if isinstance(metrics.get(node), dict):
            for key, value in flatten(metrics[node], node, sep="/").items():
                if _is_number(value):
                    out[RESULT_PREFIX + key] = float(value)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@functools.cache
def git_commit() -> str | None:
    """The commit of the brats-seg source that runs, when it runs from a git checkout (an
    editable install); None for an installed copy (even one inside some other repository)."""
    import brats_seg

    source = Path(brats_seg.__file__).resolve()
    try:
        tracked = subprocess.run(
            ["git", "-C", str(source.parent), "ls-files", "--error-unmatch", source.name],
            capture_output=True,
            timeout=10,
        )
        if tracked.returncode != 0:
            return None
        head = subprocess.run(
            ["git", "-C", str(source.parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() or None if head.returncode == 0 else None


def run_tags(cfg, run_dir: Path, info: dict[str, Any]) -> dict[str, str]:
    """What ran where: the study row, fold, seed, model, config hash, device and git commit."""
    from brats_seg.training.hardware import cpu_model_name

    split = cfg.data.get("split") or {}
    tags = {
        "mlflow.runName": run_dir.name,
        "run_dir": str(run_dir.resolve()),
        "experiment_row": str(cfg.get("experiment_id") or ""),
        "seed": str(cfg.seed),
        "model": str(cfg.model.name),
        "config_hash": str(info.get("config_hash") or ""),
        "cpu": cpu_model_name(),
    }
    if split.get("folds") is not None:
        tags["fold"] = f"{split.get('fold')} of {split.get('folds')}"
    if info.get("device"):
        tags["device"] = str(info["device"])
    if info.get("gpu_models"):
        tags["gpu"] = ", ".join(info["gpu_models"])
    if info.get("precision"):
        tags["precision"] = str(info["precision"])
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return {key: value for key, value in tags.items() if value != ""}


# --------------------------------------------------------------------------------- the run


class MlflowTracker:
    """The MLflow run of one run folder."""

    def __init__(self, client, run_id: str, folder: RunFolder, cfg):
        self.client = client
        self.run_id = run_id
        self.folder = folder
        self.cfg = cfg
        self.log_artifacts = bool(cfg.logger.log_artifacts)

    @classmethod
    def open(cls, cfg, run_dir: Path) -> MlflowTracker:
        """The run folder's MLflow run: the one run.json records, when it is in this store,
        else a new one; its params and tags logged, its id recorded in run.json."""
        _quiet_mlflow_logs()
        from mlflow.tracking import MlflowClient

        folder = RunFolder(run_dir)
        uri = tracking_uri(cfg)
        if uri.startswith("sqlite:///"):
            _output_root(cfg).mkdir(parents=True, exist_ok=True)
        client = MlflowClient(tracking_uri=uri)
        with _store_lock(cfg, uri):
            run_id = _resumed_run(client, uri, folder)
            if run_id is None:
                experiment_id = _experiment_id(client, cfg, uri)
                run_id = client.create_run(experiment_id, run_name=run_dir.name).info.run_id
                folder.update(
                    **{
                        RUN_RECORD_KEY: {
                            "tracking_uri": uri,
                            "experiment_id": experiment_id,
                            "run_id": run_id,
                        }
                    }
                )
                log.info("%s: tracked in MLflow run %s at %s", run_dir, run_id, uri)
            else:
                client.update_run(run_id, status="RUNNING")
                log.info("%s: continues MLflow run %s at %s", run_dir, run_id, uri)
        tracker = cls(client, run_id, folder, cfg)
        tracker.log_params(config_params(cfg))
        tracker.log_tags()
        return tracker

    def log_tags(self) -> None:
        """The run's tags, from run.json as it stands (the device is known once training
        starts)."""
        self.set_tags(run_tags(self.cfg, self.folder.path, self.folder.read() or {}))

    def log_params(self, params: dict[str, str]) -> None:
        """Params not logged yet (MLflow keeps a param's first value; a resumed run may differ
        only in keys that do not change results, e.g. trainer.verbose)."""
        from mlflow.entities import Param

        logged = self.client.get_run(self.run_id).data.params
        new = [Param(k, v) for k, v in params.items() if k not in logged]
        for start in range(0, len(new), _PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=new[start : start + _PARAMS_PER_BATCH])

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, v) for k, v in tags.items()]
        for start in range(0, len(items), _PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=items[start : start + _PARAMS_PER_BATCH])

    def log_metrics(self, values: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        items = [Metric(k, v, stamp, step) for k, v in values.items()]
        for start in range(0, len(items), _METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=items[start : start + _METRICS_PER_BATCH])

    def log_epochs(self) -> None:
        """The rows of history.csv that MLflow lacks (a resumed run's first call also logs the
        epochs an earlier attempt backed up but was killed before logging). Rows of epochs that
        an attempt killed before its backup wrote are trimmed from history.csv and trained
        again, so each epoch is logged once, with the values history.csv keeps."""
        rows = _history_rows(self.folder.path / HISTORY_FILE)
        if not rows:
            return
        first_key = next(key for key in rows[0] if key != "epoch")
        logged = {m.step for m in self.client.get_metric_history(self.run_id, first_key)}
        for row in rows:
            epoch = int(row["epoch"])
            if epoch not in logged:
                values = {
                    k: float(v) for k, v in row.items() if k != "epoch" and v not in ("", None)
                }
                self.log_metrics(values, step=epoch)

    def log_result(self) -> None:
        """The test metrics of metrics.json and, with logger.log_artifacts, the run's report
        files; then the MLflow run is FINISHED."""
        self.log_tags()
        self.log_epochs()
        path = self.folder.metrics_path
        if path.exists():
            self.log_metrics(result_metrics(json.loads(path.read_text())))
        if self.log_artifacts:
            for name in (METRICS_MD_FILE, METRICS_FILE, CONFIG_FILE):
                if (self.folder.path / name).exists():
                    self.client.log_artifact(self.run_id, str(self.folder.path / name))
            plots = self.folder.path / PLOT_DIR
            if plots.is_dir() and any(plots.iterdir()):
                self.client.log_artifacts(self.run_id, str(plots), artifact_path=PLOT_DIR)
        self.client.set_terminated(self.run_id, "FINISHED")

    def end(self, status: str) -> None:
        """Mark the MLflow run FAILED or KILLED; a tracking error here only warns, so that it
        does not hide the error that ended the run."""
        try:
            self.log_epochs()
            self.client.set_terminated(self.run_id, status)
        except Exception as err:  # noqa: BLE001  (any tracking error: the run's own error wins)
            log.warning("MLflow run %s not marked %s: %s", self.run_id, status, first_line(err))

    def callback(self):
        """A Keras callback that logs each epoch's row of history.csv as it is written (place it
        after the CSV logger and the resume backup); a tracking error warns and the next epoch
        catches up."""
        import keras

        tracker = self

        class LogEpochsToMlflow(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                try:
                    tracker.log_tags()
                except Exception as err:  # noqa: BLE001
                    log.warning("MLflow: tags not logged (%s)", first_line(err))
                tracker.log_epochs_safely()

            def on_epoch_end(self, epoch, logs=None):
                tracker.log_epochs_safely()

        return LogEpochsToMlflow()

    def log_epochs_safely(self) -> None:
        try:
            self.log_epochs()
        except Exception as err:  # noqa: BLE001  (a tracking hiccup must not stop training)
            log.warning(
                "MLflow: epochs not logged yet (%s); retried after the next epoch", first_line(err)
            )


@contextmanager
def track_run(cfg, run_dir: str | Path) -> Iterator[MlflowTracker | None]:
    """The run's MLflow run while its job runs (None without ``logger=mlflow``).

    A job that returns logs its result and finishes the MLflow run; one stopped by SIGTERM or
    Ctrl-C marks it KILLED, one that fails marks it FAILED; a job killed outright leaves it
    RUNNING, and its resume continues it. A tracking error after the run folder is complete only
    warns: the run's result is in its folder either way.
    """
    if not enabled(cfg):
        yield None
        return
    tracker = MlflowTracker.open(cfg, Path(run_dir))
    try:
        yield tracker
    except KeyboardInterrupt:
        tracker.end("KILLED")
        raise
    except BaseException:
        tracker.end("FAILED")
        raise
    try:
        tracker.log_result()
    except Exception as err:  # noqa: BLE001
        log.warning(
            "%s: completed, but its result did not reach MLflow run %s (%s)",
            run_dir,
            tracker.run_id,
            first_line(err) or type(err).__name__,
        )


def log_completed_run(cfg, run_dir: Path) -> None:
    """A completed run that the command skips, logged once with ``logger=mlflow``: a run trained
    before tracking was on (or into another store) gets its MLflow run, FINISHED with its result;
    one whose MLflow run in this store is FINISHED already is left as it is."""
    if not enabled(cfg):
        return
    _quiet_mlflow_logs()
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(cfg)
    client = MlflowClient(tracking_uri=uri)
    run_id = _resumed_run(client, uri, RunFolder(run_dir))
    if run_id is not None and client.get_run(run_id).info.status == "FINISHED":
        return
    with track_run(cfg, run_dir):
        pass


def _resumed_run(client, uri: str, folder: RunFolder) -> str | None:
    """The MLflow run that run.json records, when it was made in this store and still exists."""
    record = (folder.read() or {}).get(RUN_RECORD_KEY) or {}
    if record.get("tracking_uri") != uri or not record.get("run_id"):
        return None
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(record["run_id"])
    except MlflowException:
        return None
    return run.info.run_id if run.info.lifecycle_stage == "active" else None


def _experiment_id(client, cfg, uri: str) -> str:
    """The experiment's id, made when missing (beside the SQLite store, its artifacts go to
    ``paths.output_root/mlartifacts``; a server puts them where it was told)."""
    from mlflow.exceptions import MlflowException

    name = experiment_name(cfg)
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage != "active":
            raise RunError(
                f"logger.experiment_name={name}: that MLflow experiment is deleted; restore it "
                "in MLflow or pick another name"
            )
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (_output_root(cfg) / ARTIFACT_DIR).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:
        # Another job of the sweep made it first (a server has no lock shared with us).
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


@contextmanager
def _store_lock(cfg, uri: str) -> Iterator[None]:
    """Parallel jobs of a sweep set up one SQLite store in turn (its first use creates its
    tables)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    from filelock import FileLock

    with FileLock(str(_output_root(cfg) / (SQLITE_FILE + ".lock"))):
        yield


def _check_reachable(uri: str) -> None:
    """A tracking server answers (any HTTP status) within SERVER_TIMEOUT_S, before any work;
    MLflow's client would retry a dead address for minutes."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=SERVER_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ConfigError(
            f"logger.tracking_uri={uri}: no MLflow server answers there ({reason}); start it "
            "or fix the address"
        ) from err


def _history_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [row for row in csv.DictReader(f) if (row.get("epoch") or "").isdigit()]


def _quiet_mlflow_logs() -> None:
    """MLflow's store set-up logs each schema migration (alembic) at INFO."""
    for name in ("alembic", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)
