"""Two workers on 127.0.0.1 train one tiny run with MultiWorkerMirroredStrategy (TF_CONFIG), the
real CLI.

The chief (worker 0) writes the one run folder; worker 1 trains beside it, writes only a scratch
folder that it removes, and logs the fingerprint of its final weights, which must equal the chief's.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SMALL_UNET, history_epochs, only_run_dir

FINGERPRINT = re.compile(r"worker-(\d): weights after training: ([0-9a-f]{16})")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start(out: Path, logs: Path, *overrides: str) -> list[subprocess.Popen]:
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    procs = []
    for index in range(2):
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}
            ),
        }
        log = (logs / f"worker{index}.log").open("a")
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "brats_seg",
                    "train",
                    "debug=tiny",
                    f"paths.output_root={out}",
                    *SMALL_UNET,
                    "trainer.strategy=multiworker",
                    *overrides,
                ],
                cwd=out.parent,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    return procs


def _wait(procs: list[subprocess.Popen], timeout: float = 600) -> list[int]:
    deadline = time.time() + timeout
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=max(1.0, deadline - time.time())))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            codes.append(proc.wait())
    return codes


def _fingerprints(logs: Path) -> dict[int, str]:
    found = {}
    for index in range(2):
        for match in FINGERPRINT.finditer((logs / f"worker{index}.log").read_text()):
            found[int(match.group(1))] = match.group(2)
    return found


def _check_one_complete_folder(out: Path, epochs: int) -> tuple[Path, dict]:
    run_dir = only_run_dir(out)
    status = json.loads((run_dir / "run.json").read_text())
    assert status["status"] == "completed" and status["workers"] == 2 and status["replicas"] == 2
    assert sorted(history_epochs(run_dir)) == list(range(epochs))  # one row per epoch: the chief's
    for name in (
        "config.yaml",
        "split.json",
        "metrics.json",
        "checkpoints/best.keras",
        "checkpoints/last.keras",
    ):
        assert (run_dir / name).exists(), name
    leftovers = [
        p.name for p in run_dir.iterdir() if p.name.startswith(".worker-") or p.name == "backup"
    ]
    assert not leftovers, leftovers
    with (out / "experiments.csv").open(newline="") as f:
        assert len(list(csv.DictReader(f))) == 1
    return run_dir, status


@pytest.mark.slow
def test_two_workers_write_one_run_folder_with_equal_weights(tmp_path):
    out, logs = tmp_path / "outputs", tmp_path / "logs"
    out.mkdir()
    logs.mkdir()
    codes = _wait(_start(out, logs))
    assert codes == [0, 0], [(logs / f"worker{i}.log").read_text()[-3000:] for i in range(2)]
    _, status = _check_one_complete_folder(out, epochs=2)
    prints = _fingerprints(logs)
    assert set(prints) == {0, 1} and prints[0] == prints[1] == status["weights_fingerprint"]


@pytest.mark.slow
def test_kill_9_one_worker_then_both_resume_from_the_backup(tmp_path):
    out, logs = tmp_path / "outputs", tmp_path / "logs"
    out.mkdir()
    logs.mkdir()
    overrides = ("trainer.epochs=6", "trainer.steps_per_epoch=4")
    procs = _start(out, logs, *overrides)
    deadline = time.time() + 600
    run_dir = None
    try:
        while time.time() < deadline:
            runs = list((out / "tiny-runs").glob("*")) if (out / "tiny-runs").exists() else []
            if runs and len(history_epochs(runs[0])) >= 2:
                run_dir = runs[0]
                break
            if any(proc.poll() is not None for proc in procs):
                pytest.fail("a worker finished or died before it could be killed")
            time.sleep(0.2)
        os.killpg(procs[1].pid, signal.SIGKILL)  # worker 1 dies mid-training...
    finally:
        # ...and the chief, stuck on its collectives, is stopped as a scheduler would
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert run_dir is not None, "no epoch finished in time"
    done_before = history_epochs(run_dir)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    for index in range(2):
        (logs / f"worker{index}.log").write_text("")

    codes = _wait(_start(out, logs, *overrides))
    assert codes == [0, 0], [(logs / f"worker{i}.log").read_text()[-3000:] for i in range(2)]
    _, status = _check_one_complete_folder(out, epochs=6)
    resumed = history_epochs(run_dir)[len(done_before) :]
    assert resumed and 2 <= resumed[0] <= max(done_before) + 1, (done_before, resumed)
    assert status["attempts"] == 2
    for index in range(2):
        assert (
            "resuming from the backup after epoch" in (logs / f"worker{index}.log").read_text()
        ), index
    prints = _fingerprints(logs)
    assert set(prints) == {0, 1} and prints[0] == prints[1] == status["weights_fingerprint"]
