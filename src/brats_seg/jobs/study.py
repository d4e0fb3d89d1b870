"""The Optuna study of a search, kept in an SQLite file under the sweep folder so that a killed
search continues where it stopped (hydra/sweeper=resumable_optuna).

Optuna 2.10 (the newest the hydra-optuna-sweeper plugin allows) stamps its schema version with a
bare ``engine.connect()`` that SQLAlchemy 2 never commits: the stamp is lost and its open write
locks the file ("database is locked"). ``open_storage`` writes the tables and the stamp itself in a
committed transaction first, after which Optuna only reads them.

Its functions import optuna where they need it: a search is the only user.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from brats_seg.errors import ConfigError, RunError

log = logging.getLogger(__name__)

SQLITE_PREFIX = "sqlite:///"
# Beside the study file: held for the whole search, so that a trial left RUNNING in the file is one
# whose process is gone (killed), never one another search is still training.
LOCK_SUFFIX = ".lock"
# Study user attributes: what the search was started with; a resume must give the same.
SEARCH_ATTR = "brats_seg_search"


def sqlite_path(url: str) -> Path | None:
    """The file of an ``sqlite:///`` URL (absolute), None for another storage."""
    if not url.startswith(SQLITE_PREFIX):
        return None
    return Path(os.path.abspath(url[len(SQLITE_PREFIX) :]))


def open_storage(url: str):
    """Optuna's RDB storage at ``url``; an SQLite file (and its folder) is made if missing."""
    import sqlalchemy
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from optuna.storages import RDBStorage
    from optuna.storages._rdb import models

    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        url = SQLITE_PREFIX + str(path)
    # Optuna's own migration scripts, which name its schema versions.
    scripts = ScriptDirectory(str(Path(models.__file__).parent / "alembic"))
    engine = sqlalchemy.create_engine(url)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # as Optuna sets it: no set-up chatter
    with warnings.catch_warnings():
        # Loading those scripts warns of SQLAlchemy 1.x names they use; it is Optuna's to change.
        warnings.simplefilter("ignore", sqlalchemy.exc.SADeprecationWarning)
        try:
            with engine.begin() as connection:
                context = MigrationContext.configure(connection)
                if context.get_current_revision() is None:
                    models.BaseModel.metadata.create_all(connection)
                    context.stamp(scripts, scripts.get_current_head())
        finally:
            engine.dispose()
        return RDBStorage(url)


@contextmanager
def study_lock(url: str) -> Iterator[None]:
    """Hold the lock of the SQLite study at ``url`` (nothing for another storage) while a search
    uses it; RunError when another search holds it."""
    from filelock import FileLock, Timeout

    path = sqlite_path(url)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path) + LOCK_SUFFIX)
    try:
        lock.acquire(timeout=0)
    except Timeout as err:
        raise RunError(f"{path} is in use by another brats-seg search") from err
    try:
        yield
    finally:
        lock.release()


def direction_names(direction: Any) -> list[str]:
    """``hydra.sweeper.direction`` as a list of names: one name, a list of them, or the plugin's
    enum (its default, Direction.minimize)."""
    items = (
        list(direction)
        if isinstance(direction, (list, tuple)) or _is_list(direction)
        else [direction]
    )
    return [str(getattr(d, "name", d)).split(".")[-1] for d in items]


def _is_list(value: Any) -> bool:
    from omegaconf import ListConfig

    return isinstance(value, ListConfig)


def resume(
    storage, study_name: str, directions: list[str], search: list[str], n_trials: int
) -> tuple[int, int]:
    """Prepare the study to continue: ``(trials left to run of n_trials, trials it holds)``.

    A new study records ``search`` (the search space and fixed overrides); a stored one must hold
    the same search and directions, else ConfigError. A trial still RUNNING in it was killed with
    its search: it is put back to WAITING, so that the next trial asked for is that one, with its
    parameters, and resumes its run folder. Trials that finished (complete, failed or pruned) count
    towards ``n_trials``.
    """
    import optuna
    from optuna.trial import TrialState

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # a new study
        study = optuna.create_study(study_name=study_name, storage=storage, directions=directions)
    where = sqlite_path(storage.url) or storage.url
    stored = [d.name.lower() for d in study.directions]
    if stored != list(directions):
        raise ConfigError(
            f"{where}: study {study_name} was started to {'/'.join(stored)} and this search would "
            f"{'/'.join(directions)} (tune.objective); pick another sweep folder (sweep_name=...)"
        )
    recorded = study.user_attrs.get(SEARCH_ATTR)
    if recorded is None:
        study.set_user_attr(SEARCH_ATTR, list(search))
    elif list(recorded) != list(search):
        raise ConfigError(
            f"{where}: study {study_name} searches {' '.join(recorded)}, not "
            f"{' '.join(search)}; give the same overrides to continue it, or pick another sweep "
            "folder (sweep_name=...)"
        )
    finished = 0
    trials = study.get_trials(deepcopy=False)
    for trial in trials:
        if trial.state == TrialState.RUNNING:
            trial_id = storage.get_trial_id_from_study_id_trial_number(
                storage.get_study_id_from_name(study_name), trial.number
            )
            storage.set_trial_state(trial_id, TrialState.WAITING)
            log.info("trial %d was interrupted: it runs again, resuming its folder", trial.number)
        elif trial.state.is_finished():
            finished += 1
    left = max(0, n_trials - finished)
    if finished:
        log.info("study %s: %d of %d trials finished", study_name, finished, n_trials)
    return left, len(trials)


def none_completed(storage, study_name: str) -> RunError | None:
    """The error of a search that ended with no completed trial; None if one completed."""
    import optuna
    from optuna.trial import TrialState

    trials = optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False)
    if any(t.state == TrialState.COMPLETE for t in trials):
        return None
    failed = sum(t.state == TrialState.FAIL for t in trials)
    where = sqlite_path(storage.url) or storage.url
    return RunError(
        f"{where}: no trial of study {study_name} completed ({failed} failed); the log above "
        "gives each trial's error"
    )


def search_overrides(params: Any, arguments: list[str]) -> list[str]:
    """The search a sweep is started with: ``hydra.sweeper.params`` then the command line's
    overrides, as the plugin reads them."""
    return [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)
