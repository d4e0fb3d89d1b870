"""Optuna searches (hydra/sweeper=resumable_optuna): the study in SQLite, resume after a kill, the
validation objective, failed trials, and the one line without the tune extra.

Real optuna storage on disk, real Hydra sweeps through the CLI, real (tiny) training.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY_RUN, history_epochs, run_cli

optuna = pytest.importorskip("optuna")

SEARCH = ["-m", "hydra/sweeper=resumable_optuna"]


def _study(db: Path):
    from brats_seg.jobs.study import open_storage

    return optuna.load_study(study_name="brats-seg", storage=open_storage(f"sqlite:///{db}"))


def test_the_study_file_opens_again_with_its_trials(tmp_path):
    """Optuna 2.10's own RDB set-up cannot write an SQLite study under SQLAlchemy 2; open_storage
    can, and a second opening reads what the first wrote."""
    from brats_seg.jobs.study import open_storage

    db = tmp_path / "sweep" / "optuna.db"  # the folder does not exist yet
    study = optuna.create_study(
        study_name="brats-seg", storage=open_storage(f"sqlite:///{db}"), direction="maximize"
    )
    trial = study.ask()
    trial.suggest_float("optimizer.lr", 1e-4, 1e-2, log=True)
    study.tell(trial, 0.5)
    again = _study(db)
    assert [(t.state.name, t.value) for t in again.trials] == [("COMPLETE", 0.5)]
    assert again.best_params == trial.params


def test_resume_runs_a_killed_trial_again_and_counts_the_finished_ones(tmp_path):
    from brats_seg.jobs.study import open_storage, resume

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    search = ["optimizer.lr=tag(log,interval(1e-4,1e-2))", "debug=tiny"]
    storage = open_storage(url)
    assert resume(storage, "brats-seg", ["maximize"], search, 4) == (4, 0)
    study = optuna.load_study(study_name="brats-seg", storage=storage)
    done = study.ask()
    done.suggest_float("optimizer.lr", 1e-4, 1e-2, log=True)
    study.tell(done, 0.3)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    killed = study.ask()  # the search was killed while this trial trained
    lr = killed.suggest_float("optimizer.lr", 1e-4, 1e-2, log=True)

    storage = open_storage(url)
    assert resume(storage, "brats-seg", ["maximize"], search, 4) == (2, 3)
    study = optuna.load_study(study_name="brats-seg", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "WAITING"]
    again = study.ask()
    assert again.number == killed.number
    assert again.suggest_float("optimizer.lr", 1e-4, 1e-2, log=True) == lr


def test_resume_refuses_a_different_search_or_direction_in_the_same_study(tmp_path):
    from brats_seg.errors import ConfigError
    from brats_seg.jobs.study import open_storage, resume

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    search = ["optimizer.lr=interval(1e-4,1e-2)"]
    resume(open_storage(url), "brats-seg", ["maximize"], search, 2)
    with pytest.raises(ConfigError, match="optuna.db: study brats-seg searches optimizer.lr="):
        resume(open_storage(url), "brats-seg", ["maximize"], ["optimizer.lr=interval(0.1,1)"], 2)
    with pytest.raises(ConfigError, match="was started to maximize"):
        resume(open_storage(url), "brats-seg", ["minimize"], search, 2)


def _one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def _error_line(result) -> str:
    """The one error line of a sweep, after the log of its jobs."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("brats-seg train: ")]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr[-3000:]
    return errors[0]


def test_without_the_plugin_the_search_is_one_line_naming_the_extra(tmp_path):
    """An empty hydra_plugins.hydra_optuna_sweeper ahead on the path hides the installed plugin,
    as an install without the tune extra lacks it."""
    hidden = tmp_path / "hidden" / "hydra_plugins" / "hydra_optuna_sweeper"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("")
    path = os.pathsep.join(filter(None, [str(tmp_path / "hidden"), os.environ.get("PYTHONPATH")]))
    out = tmp_path / "outputs"
    for chosen in (SEARCH, ["-m", "hparams_search=real_cpu_optuna", "data.root=/nowhere"]):
        result = run_cli(
            "train", *chosen, f"paths.output_root={out}", cwd=tmp_path, env={"PYTHONPATH": path}
        )
        assert result.returncode == 1
        assert "pip install 'brats-seg[tune]'" in _one_line(result)
    assert not out.exists()


def test_a_bad_fixed_option_of_a_search_is_refused_before_any_trial(tmp_path):
    out = tmp_path / "outputs"
    result = run_cli(
        "train",
        *SEARCH,
        *TINY_RUN,
        f"paths.output_root={out}",
        "trainer.batch_size=0",
        "optimizer.lr=interval(1e-4,1e-2)",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert _one_line(result) == "brats-seg train: error: trainer.batch_size=0: must be >= 1"
    assert not out.exists()


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_a_search_that_would_minimise_a_dice_is_refused_before_training(tmp_path):
    """The plugin's own hydra/sweeper=optuna minimises unless told: refused in one line, and no
    trial trains."""
    out = tmp_path / "outputs"
    result = run_cli(
        "train",
        "-m",
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=1",
        *TINY_RUN,
        f"paths.output_root={out}",
        "optimizer.lr=interval(1e-4,1e-2)",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    line = _error_line(result)
    assert "hydra.sweeper.direction=minimize" in line and "maximize" in line, line
    assert not list(out.rglob("run.json"))


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_failed_trials_are_recorded_as_failed_not_as_numbers(tmp_path):
    out = tmp_path / "outputs"
    result = run_cli(
        "train",
        *SEARCH,
        "hydra.sweeper.n_trials=2",
        *TINY_RUN,
        f"paths.output_root={out}",
        "trainer.batch_size=choice(0,-1)",  # each trial's value is outside the option's domain
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "no trial of study brats-seg completed (2 failed)" in _error_line(result)
    study = _study(out / "sweeps" / "tiny" / "optuna.db")
    assert [(t.state.name, t.value) for t in study.trials] == [("FAIL", None)] * 2


def test_the_objective_is_the_validation_patients_score(tiny_trained_run, tmp_path):
    from brats_seg.errors import ConfigError
    from brats_seg.jobs.objective import objective_value
    from brats_seg.runfolder import RunFolder

    folder = RunFolder(tiny_trained_run)
    split = folder.read_split()
    assert split["val"] and not set(split["val"]) & set(split["test"])
    assert objective_value(tiny_trained_run, "val_loss") == min(folder.read_history()["val_loss"])
    dice = objective_value(tiny_trained_run, "val_wt_dice")
    assert 0.0 <= dice <= 1.0

    run = shutil.copytree(tiny_trained_run, tmp_path / "run")
    no_val = {**split, "train": split["train"] + split["val"], "val": []}
    (run / "split.json").write_text(json.dumps(no_val))
    with pytest.raises(ConfigError, match="has none: set data.split.val > 0"):
        objective_value(run, "val_wt_dice")


def _trials(db: Path) -> list[tuple[int, str, int]]:
    """(number, state, how many parameters) of each trial, read as another process would."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute(
                "SELECT t.number, t.state, COUNT(p.param_id) FROM trials t "
                "LEFT JOIN trial_params p ON p.trial_id = t.trial_id "
                "GROUP BY t.trial_id ORDER BY t.number"
            ).fetchall()
    except sqlite3.OperationalError:  # being written, or its tables not made yet
        return []


@pytest.mark.slow
def test_a_search_killed_during_a_trial_continues_to_exactly_its_trials(tmp_path):
    """Two trials; SIGKILL of the process group while the second trains, after two epochs (the
    first one's backup is then surely written);
    the same command again ends with the two trials complete: the first not trained again, the
    second with its parameters, resumed from its run folder's backup."""
    out = tmp_path / "outputs"
    args = [
        "train",
        *SEARCH,
        "hydra.sweeper.n_trials=2",
        *TINY_RUN,
        "trainer.epochs=4",
        "trainer.steps_per_epoch=2",
        f"paths.output_root={out}",
        "optimizer.lr=tag(log,interval(1e-4,1e-2))",
    ]
    sweep = out / "sweeps" / "tiny"
    db = sweep / "optuna.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "brats_seg", *args],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    killed_at = None
    deadline = time.time() + 900
    try:
        while time.time() < deadline and killed_at is None:
            trials = _trials(db)
            if [state for _, state, _ in trials] == ["COMPLETE", "RUNNING"] and trials[1][2] == 1:
                runs = [p for p in sweep.iterdir() if (p / "run.json").exists()]
                second = [r for r in runs if not (r / "metrics.json").exists()]
                if second and len(history_epochs(second[0])) >= 2:
                    killed_at = second[0]
                    break
            if proc.poll() is not None:
                pytest.fail("the search ended or died before it could be killed")
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert killed_at is not None, "the second trial did not finish two epochs in time"
    before = _study(db)
    assert [t.state.name for t in before.trials] == ["COMPLETE", "RUNNING"]
    first = next(p for p in sweep.iterdir() if (p / "metrics.json").exists())
    first_metrics = (first / "metrics.json").stat().st_mtime_ns

    result = run_cli(*args, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "resuming from the backup after epoch" in output, output[-3000:]

    after = _study(db)
    assert [(t.number, t.state.name) for t in after.trials] == [(0, "COMPLETE"), (1, "COMPLETE")]
    assert [t.params for t in after.trials] == [t.params for t in before.trials]
    assert (first / "metrics.json").stat().st_mtime_ns == first_metrics
    assert json.loads((killed_at / "run.json").read_text())["status"] == "completed"
    assert history_epochs(killed_at) == [0, 1, 2, 3]
