"""logger=mlflow: real tiny training runs tracked in a real MLflow store (the SQLite default, and a
real `mlflow server` started here), read back through MLflow's own client."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import TINY_RUN, run_cli

pytest.importorskip("mlflow")

INSTALL_LINE = "pip install 'brats-seg[mlflow]'"


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _leaves(node, prefix=""):
    """config.yaml's leaves by dotted key (written here, independently of the tracker)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(_leaves(value, f"{prefix}.{key}" if prefix else key))
        return out
    return {prefix: node}


def _history(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    with (run_dir / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    return {
        key: [(int(row["epoch"]), float(row[key])) for row in rows]
        for key in rows[0]
        if key != "epoch"
    }


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def assert_run_matches_folder(client, run_id: str, run_dir: Path) -> None:
    """The MLflow run holds the run folder's config as params, its history.csv as per-epoch
    metrics (each epoch once) and metrics.json's test metrics; its artifacts and tags."""
    from omegaconf import OmegaConf

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    config = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"), resolve=True)
    leaves = _leaves(config)
    params = run.data.params
    assert set(params) == set(leaves)
    for key, value in leaves.items():
        assert params[key] == (value if isinstance(value, str) else json.dumps(value)), key
    assert params["trainer.epochs"] == str(config["trainer"]["epochs"])

    for key, values in _history(run_dir).items():
        logged = [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        assert sorted(logged) == values, key

    metrics = json.loads((run_dir / "metrics.json").read_text())
    got = run.data.metrics
    expected = {}
    for region, scores in metrics["regions"].items():
        for name, value in scores.items():
            expected[f"test/regions/{region}/{name}"] = value
    for convention, regions in metrics["lesionwise"].items():
        for region, scores in regions.items():
            for name, value in scores.items():
                expected[f"test/lesionwise/{convention}/{region}/{name}"] = value
    labels = metrics["per_class"]["labels"]
    for name in ("sensitivity", "specificity", "f1", "precision"):
        for label, value in zip(labels, metrics["per_class"][name], strict=True):
            expected[f"test/per_class/{label.replace('/', '-')}/{name}"] = value
        expected[f"test/col_ave/{name}"] = metrics["col_ave"][name]
    assert len(expected) > 40
    for key, value in expected.items():
        if value is None:
            assert key not in got, key
        else:
            assert key in got and _same(got[key], float(value)), (key, got.get(key), value)

    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"metrics.md", "metrics.json", "config.yaml", "plots"} <= artifacts
    plots = {Path(a.path).name for a in client.list_artifacts(run_id, "plots")}
    assert plots == {p.name for p in (run_dir / "plots").iterdir()}

    tags = run.data.tags
    status = json.loads((run_dir / "run.json").read_text())
    assert tags["seed"] == str(config["seed"]) and tags["model"] == config["model"]["name"]
    assert tags["config_hash"] == status["config_hash"] and tags["device"] == status["device"]
    assert tags["cpu"] and tags["run_dir"] == str(run_dir.resolve())
    assert status["mlflow"]["run_id"] == run_id


def _status(run_dir: Path) -> dict | None:
    """run.json, or None before it is written (it is replaced atomically)."""
    path = run_dir / "run.json"
    return json.loads(path.read_text()) if path.exists() else None


def _runs(client, experiment: str):
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment}"
    return client.search_runs([found.experiment_id])


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_sqlite_default_store_holds_params_epochs_and_the_metrics_json(tmp_path):
    out = tmp_path / "outputs"
    done = run_cli("train", *TINY_RUN, "logger=mlflow", f"paths.output_root={out}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # logger=... does not rename the run folder: tracking does not change what a run computes.
    (run_dir,) = [p for p in (out / "tiny-runs").iterdir() if p.is_dir()]
    assert "logger" not in run_dir.name
    client = _client(f"sqlite:///{out / 'mlflow.db'}")
    (run,) = _runs(client, "tiny-runs")  # the run group names the experiment of a single run
    assert_run_matches_folder(client, run.info.run_id, run_dir)
    # beside the store, not in the working directory
    assert client.get_experiment_by_name("tiny-runs").artifact_location == (
        (out / "mlartifacts").as_uri()
    )
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_a_completed_run_trained_without_the_logger_is_logged_once_when_skipped(
    tiny_trained_run, tmp_path
):
    """The same command again with logger=mlflow skips the completed run (tracking changes no
    result) and logs it: one FINISHED MLflow run with its epochs and metrics; a third time adds
    nothing."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_trained_run, run)
    out = tmp_path / "outputs"
    # another output root, so another cache folder: neither changes what the run computes
    args = ("train", *TINY_RUN, "logger=mlflow", f"paths.output_root={out}", f"hydra.run.dir={run}")
    client = _client(f"sqlite:///{out / 'mlflow.db'}")
    for _ in range(2):
        done = run_cli(*args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "already completed, skipping" in done.stdout + done.stderr
        (logged,) = _runs(client, "tiny-runs")
        assert logged.info.status == "FINISHED"
    assert json.loads((run / "run.json").read_text())["mlflow"]["run_id"] == logged.info.run_id
    epochs = [m.step for m in client.get_metric_history(logged.info.run_id, "loss")]
    assert sorted(epochs) == [
        int(row["epoch"]) for row in csv.DictReader((run / "history.csv").open())
    ]
    wt = json.loads((run / "metrics.json").read_text())["regions"]["WT"]["dice_mean"]
    assert _same(logged.data.metrics["test/regions/WT/dice_mean"], wt)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1 with an SQLite store and its own artifact folder."""
    port = _free_port()
    folder = tmp_path / "server"
    folder.mkdir()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder / 'store.db'}",
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=(folder / "server.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # no background job runner (its worker processes): the test needs only tracking
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            assert proc.poll() is None, (folder / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mlflow server did not answer /health"
            time.sleep(0.5)
        yield uri, folder
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow  # starts a server, then trains
def test_a_real_mlflow_server_gets_the_same_run(mlflow_server, tmp_path):
    uri, folder = mlflow_server
    out, run_dir = tmp_path / "outputs", tmp_path / "run"
    done = run_cli(
        "train",
        *TINY_RUN,
        "logger=mlflow",
        f"logger.tracking_uri={uri}",
        "logger.experiment_name=server-test",
        f"paths.output_root={out}",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client = _client(uri)
    (run,) = _runs(client, "server-test")
    assert_run_matches_folder(client, run.info.run_id, run_dir)
    assert not (out / "mlflow.db").exists()  # the server's store, not the default one
    stored = {p.name for p in (folder / "artifacts").rglob("*") if p.is_file()}
    assert {"metrics.md", "config.yaml", "learning_curves.png"} <= stored


def test_a_server_that_does_not_answer_is_one_line_before_any_work(tmp_path):
    out, run_dir = tmp_path / "outputs", tmp_path / "run"
    uri = f"http://127.0.0.1:{_free_port()}"
    done = run_cli(
        "train",
        *TINY_RUN,
        "logger=mlflow",
        f"logger.tracking_uri={uri}",
        f"paths.output_root={out}",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert f"logger.tracking_uri={uri}: no MLflow server answers there" in lines[-1], lines
    assert "Traceback" not in done.stderr
    assert not run_dir.exists() and not out.exists()


@pytest.mark.slow  # trains four epochs, killed after the first, then to the end
def test_kill_9_mid_training_and_resume_leave_one_mlflow_run(tmp_path):
    out, run_dir = tmp_path / "outputs", tmp_path / "run"
    args = (
        "train",
        *TINY_RUN,
        "trainer.epochs=4",
        "logger=mlflow",
        f"paths.output_root={out}",
        f"hydra.run.dir={run_dir}",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "brats_seg", *args],
        cwd=tmp_path,
        stdout=(tmp_path / "stdout.txt").open("w"),
        stderr=(tmp_path / "stderr.txt").open("w"),
    )
    client = _client(f"sqlite:///{out / 'mlflow.db'}")
    deadline = time.monotonic() + 400
    logged_live: list[int] = []
    # Killed once MLflow holds the first epoch, logged as it ended (not at the end of the run).
    while proc.poll() is None and time.monotonic() < deadline and not logged_live:
        record = (_status(run_dir) or {}).get("mlflow")
        if record:
            logged_live = [m.step for m in client.get_metric_history(record["run_id"], "loss")]
        time.sleep(0.1)
    assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    first = _status(run_dir)
    assert first["status"] == "running" and logged_live
    assert client.get_run(first["mlflow"]["run_id"]).info.status == "RUNNING"

    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    status = json.loads((run_dir / "run.json").read_text())
    assert status["status"] == "completed" and status["attempts"] == 2, status
    (run,) = _runs(client, "tiny-runs")
    assert run.info.run_id == first["mlflow"]["run_id"]
    assert [row[0] for row in _history(run_dir)["loss"]] == [0, 1, 2, 3]
    assert_run_matches_folder(client, run.info.run_id, run_dir)


def test_without_mlflow_installed_logger_mlflow_is_one_line_before_any_work(tmp_path):
    """MLflow hidden from the import system (sys.modules["mlflow"] = None) as if not installed."""
    out = tmp_path / "outputs"
    script = (
        "import sys; sys.modules['mlflow'] = None\n"
        "from brats_seg.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "train", *TINY_RUN, "logger=mlflow"]
        + [f"paths.output_root={out}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        f"brats-seg train: error: logger=mlflow: MLflow is not installed; {INSTALL_LINE}"
    ]
    assert not out.exists()


def test_bad_logger_values_fail_at_composition():
    from brats_seg.config import check_options, compose
    from brats_seg.errors import ConfigError

    with pytest.raises(ConfigError, match="logger.experiment_name=: must be a name"):
        check_options(compose("train", ["logger=mlflow", "logger.experiment_name=''"]))
    with pytest.raises(Exception, match="logger.log_artifacts"):
        compose("train", ["logger=mlflow", "logger.log_artifacts=maybe"])
    with pytest.raises(Exception, match="logger"):
        compose("train", ["logger=wandb"])
    assert compose("train", []).logger.name == "none"


def test_result_metrics_name_every_number_of_metrics_json():
    from brats_seg.training.tracking import result_metrics

    metrics = {
        "per_class": {"labels": ["background", "NCR/NET"], "f1": [0.9, None]},
        "regions": {"WT": {"dice_mean": 0.5, "hd95_mean": float("nan")}},
        "lesionwise": {"brats2024": {"ET": {"tp": 3, "dsc_mean": 0.25}}},
        "col_ave": {"f1": 0.7},
        "inference": {"tta": False},
        "per_patient": [{"case": "x", "WT": {"dice": 0.5}}],
    }
    got = result_metrics(metrics)
    assert set(got) == {
        "test/per_class/background/f1",
        "test/regions/WT/dice_mean",
        "test/regions/WT/hd95_mean",
        "test/lesionwise/brats2024/ET/tp",
        "test/lesionwise/brats2024/ET/dsc_mean",
        "test/col_ave/f1",
    }
    assert got["test/lesionwise/brats2024/ET/tp"] == 3.0 and math.isnan(
        got["test/regions/WT/hd95_mean"]
    )


@pytest.mark.slow  # a sweep of two tiny runs
def test_a_sweeps_runs_share_one_experiment_named_after_the_sweep(tmp_path):
    out = tmp_path / "outputs"
    done = run_cli(
        "train",
        "-m",
        *TINY_RUN,
        "seed=1,2",
        "logger=mlflow",
        f"paths.output_root={out}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client = _client(f"sqlite:///{out / 'mlflow.db'}")
    runs = _runs(client, "tiny")  # debug=tiny's sweep_name
    assert sorted(r.data.tags["seed"] for r in runs) == ["1", "2"]
    assert [e.name for e in client.search_experiments()] in (["tiny", "Default"], ["tiny"])
    for run in runs:
        assert_run_matches_folder(client, run.info.run_id, Path(run.data.tags["run_dir"]))
