"""SIGTERM while the slice cache is built by worker processes, and during training: real
subprocesses, real signals, small synthetic data.

Every worker ends within 5 s of its parent; the next run of the same command recovers; a training
run stopped by SIGTERM is recorded as ``interrupted`` (resumable), not left at ``running``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SMALL_UNET, run_cli

WORKER_GRACE_S = 5.0


def _children() -> dict[int, int]:
    """pid -> parent pid of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            table[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return table


def descendants(pid: int) -> set[int]:
    table = _children()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in table.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start_cli(*args: str, cwd: Path) -> subprocess.Popen:
    """The command in the background, its output in files (an orphaned worker would keep a pipe
    open, and a reader waiting on it would wait for the worker, not for the command)."""
    return subprocess.Popen(
        [sys.executable, "-m", "brats_seg", *args],
        cwd=cwd,
        stdout=(cwd / "stdout.txt").open("w"),
        stderr=(cwd / "stderr.txt").open("w"),
        text=True,
    )


def term_while_cache_builds(proc: subprocess.Popen, cache_dir: Path, workers: int, cwd: Path):
    """Wait until ``workers`` cache workers run under ``proc`` with a half-built cache, SIGTERM the
    parent, and return (the workers' pids, its stderr)."""
    deadline = time.monotonic() + 300
    pids: set[int] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        building = list(cache_dir.glob(".building-*"))
        pids = descendants(proc.pid)
        if building and len(pids) >= workers:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the command ended before its cache workers were seen"
    assert len(pids) >= workers, pids
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    err = (cwd / "stderr.txt").read_text()
    ended = time.monotonic()
    while time.monotonic() - ended < WORKER_GRACE_S and any(_alive(p) for p in pids):
        time.sleep(0.1)
    left = sorted(p for p in pids if _alive(p))
    for pid in left:  # do not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    assert not left, f"worker(s) {left} outlived their parent by more than {WORKER_GRACE_S} s"
    return pids, err


@pytest.fixture(scope="module")
def slow_root(tmp_path_factory) -> Path:
    """Eight synthetic cases large enough that caching them takes a few seconds."""
    root = tmp_path_factory.mktemp("interrupts") / "root"
    done = run_cli("synth", f"out={root}", "cases=8", "shape=[120,120,80]")
    assert done.returncode == 0, done.stderr[-2000:]
    return root


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_sigterm_to_eda_ends_its_cache_workers_and_the_next_run_recovers(slow_root, tmp_path):
    cache = tmp_path / "cache"
    args = (
        "eda",
        "data=brats",
        f"data.root={slow_root}",
        "data.workers=2",
        f"data.cache_dir={cache}",
        f"out={tmp_path / 'eda'}",
    )
    proc = start_cli(*args, cwd=tmp_path)
    _, err = term_while_cache_builds(proc, cache, workers=2, cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in err, err[-2000:]
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert not list(cache.glob(".building-*")), "a half-built cache was left behind"
    assert len([p for p in cache.iterdir() if (p / "index.json").is_file()]) == 1


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_sigterm_to_train_while_caching_ends_its_workers_and_records_interrupted(
    slow_root, tmp_path
):
    """Training imports TensorFlow first, so its cache workers come from a fork server (a third
    process under the command)."""
    cache, run = tmp_path / "cache", tmp_path / "run"
    proc = start_cli(
        "train",
        "data=brats",
        f"data.root={slow_root}",
        "data.workers=2",
        f"data.cache_dir={cache}",
        *SMALL_UNET,
        "trainer=tiny",
        f"paths.output_root={tmp_path / 'outputs'}",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    _, err = term_while_cache_builds(proc, cache, workers=3, cwd=tmp_path)
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "interrupted", status
    # stopped, not failed: the build keeps what it finished for the same command's next run
    kept = list(cache.glob(".building-*"))
    assert len(kept) == 1 and "keeps its finished cases" in err, (kept, err[-2000:])


@pytest.mark.slow  # trains up to six epochs, then again to the end
def test_sigterm_during_training_records_interrupted_and_the_same_command_resumes(tmp_path):
    run = tmp_path / "run"
    args = (
        "train",
        "debug=tiny",
        *SMALL_UNET,
        "trainer.epochs=6",
        f"paths.output_root={tmp_path / 'outputs'}",
        f"hydra.run.dir={run}",
    )
    proc = start_cli(*args, cwd=tmp_path)
    deadline = time.monotonic() + 400
    while proc.poll() is None and time.monotonic() < deadline:
        if (run / "checkpoints" / "last.keras").exists():
            break
        time.sleep(0.05)
    assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()[-2000:]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    err = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 143, err[-2000:]
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "interrupted" and status["error"] == "SIGTERM", status

    from brats_seg.errors import RunError
    from brats_seg.runfolder import open_run

    with pytest.raises(RunError, match="the run is interrupted"):
        open_run(run)

    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "completed" and status["attempts"] == 2, status
