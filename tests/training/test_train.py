"""brats-seg train end to end.

Real Hydra composition, real Keras training (tiny), real run folders, resume.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SMALL_UNET, history_epochs, only_run_dir, run_cli


def train(out: Path, *overrides: str, timeout: int = 900):
    return run_cli(
        "train",
        "debug=tiny",
        f"paths.output_root={out}",
        *SMALL_UNET,
        *overrides,
        cwd=out.parent,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "outputs"
    out.mkdir()
    result = train(out, "trainer.epochs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    return out, only_run_dir(out), result


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_run_folder_holds_every_artifact(tiny_run):
    out, run_dir, _ = tiny_run
    status = json.loads((run_dir / "run.json").read_text())
    assert status["status"] == "completed"
    for key in ("started", "ended", "versions", "params", "precision", "device", "config_hash"):
        assert status.get(key) not in (None, ""), key
    overlays = [f"plots/overlay_{i}.png" for i in range(1, 6)]
    for name in (
        "config.yaml",
        "split.json",
        "history.csv",
        "metrics.json",
        "metrics.md",
        "model.txt",
        "checkpoints/best.keras",
        "checkpoints/last.keras",
        "plots/learning_curves.png",
        "plots/confusion_matrix.png",
        *overlays,
    ):
        assert (run_dir / name).exists(), name
    assert not (run_dir / "backup").exists() or not any((run_dir / "backup").iterdir())
    assert history_epochs(run_dir) == [0, 1]


def test_metrics_json_has_the_documented_shape(tiny_run):
    _, run_dir, _ = tiny_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    per_class = metrics["per_class"]
    assert per_class["labels"] == ["background", "NCR/NET", "edema", "ET"]
    for measure in ("sensitivity", "specificity", "f1", "precision"):
        assert len(per_class[measure]) == 4
        assert set(metrics["col_ave"]) >= {measure} and set(metrics["col_ave_tumour"]) >= {measure}
    split = json.loads((run_dir / "split.json").read_text())
    assert [p["case"] for p in metrics["per_patient"]] == split["test"]
    for region in ("WT", "TC", "ET"):
        assert set(metrics["regions"][region]) == {
            "dice_mean",
            "dice_median",
            "hd95_mean",
            "hd95_median",
        }
        for patient in metrics["per_patient"]:
            assert 0.0 <= patient[region]["dice"] <= 1.0
    # the split is by patient: no case in two splits
    cases = split["train"] + split["val"] + split["test"]
    assert len(cases) == len(set(cases))


def test_completed_run_is_appended_to_the_experiment_table(tiny_run):
    out, run_dir, _ = tiny_run
    with (out / "experiments.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    assert Path(rows[0]["run_dir"]) == run_dir.resolve()
    assert (
        rows[0]["model"] == "unet"
        and rows[0]["loss"] == "weighted (weights ** 0.5)"
        and int(rows[0]["params"]) > 0
    )


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_same_command_again_skips_the_completed_run(tiny_run):
    out, run_dir, _ = tiny_run
    before = (run_dir / "metrics.json").stat().st_mtime_ns
    result = train(out, "trainer.epochs=2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "already completed" in result.stdout + result.stderr
    assert (run_dir / "metrics.json").stat().st_mtime_ns == before
    with (out / "experiments.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 1


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_evaluate_command_rewrites_metrics_from_the_checkpoint(tiny_run):
    _, run_dir, _ = tiny_run
    first = json.loads((run_dir / "metrics.json").read_text())
    result = run_cli("evaluate", f"run={run_dir}", cwd=run_dir.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    again = json.loads((run_dir / "metrics.json").read_text())
    assert again["confusion_matrix"] == first["confusion_matrix"]
    assert "WT: Dice mean" in result.stdout


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_a_crash_after_training_resumes_with_evaluation_only(tiny_run):
    """The state a crash during evaluation leaves.

    Trained, checkpoints saved, no metrics, status running.
    """

    out, run_dir, _ = tiny_run
    status = json.loads((run_dir / "run.json").read_text())
    assert status["trained"] is True and status["epochs_done"] == 2
    (run_dir / "run.json").write_text(json.dumps({**status, "status": "running", "ended": None}))
    (run_dir / "metrics.json").unlink()
    result = train(out, "trainer.epochs=2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "evaluating its checkpoint" in result.stdout + result.stderr
    assert history_epochs(run_dir) == [0, 1]  # not trained again
    again = json.loads((run_dir / "run.json").read_text())
    assert again["status"] == "completed" and again["attempts"] == status["attempts"] + 1
    assert (run_dir / "metrics.json").exists()


@pytest.mark.slow  # trains six epochs and kills the process
def test_kill_9_mid_training_then_same_command_resumes(tmp_path):
    out = tmp_path / "outputs"
    out.mkdir()
    args = [
        sys.executable,
        "-m",
        "brats_seg",
        "train",
        "debug=tiny",
        f"paths.output_root={out}",
        *SMALL_UNET,
        "trainer.epochs=6",
        "trainer.steps_per_epoch=4",
    ]
    proc = subprocess.Popen(
        args,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 600
    run_dir = None
    try:
        while time.time() < deadline:
            runs = list((out / "tiny-runs").glob("*")) if (out / "tiny-runs").exists() else []
            if runs and len(history_epochs(runs[0])) >= 2:
                run_dir = runs[0]
                break
            if proc.poll() is not None:
                pytest.fail("training finished or died before it could be killed")
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert run_dir is not None, "no epoch finished in time"
    done_before = history_epochs(run_dir)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"

    result = run_cli(
        "train",
        "debug=tiny",
        f"paths.output_root={out}",
        *SMALL_UNET,
        "trainer.epochs=6",
        "trainer.steps_per_epoch=4",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # The kill may land between an epoch's history row and its backup; that epoch is trained again
    # and logged once.
    assert "resuming from the backup after epoch" in result.stderr + result.stdout
    assert history_epochs(run_dir) == list(range(6)), (done_before, history_epochs(run_dir))
    status = json.loads((run_dir / "run.json").read_text())
    assert status["status"] == "completed" and status["attempts"] == 2


@pytest.mark.slow
def test_nan_loss_marks_the_run_failed_and_appends_nothing(tmp_path):
    out = tmp_path / "outputs"
    out.mkdir()
    result = train(
        out,
        "optimizer=sgd",
        "optimizer.lr=1e12",
        "loss=weighted",
        "trainer.epochs=3",
        "trainer.precision=float32",
    )
    assert result.returncode == 1
    assert "NaN" in result.stderr and "Traceback" not in result.stderr
    run_dir = only_run_dir(out)
    status = json.loads((run_dir / "run.json").read_text())
    assert status["status"] == "failed" and "NaN" in status["error"]
    assert not (run_dir / "metrics.json").exists()
    assert not (out / "experiments.csv").exists()


@pytest.mark.slow  # two replicas on two logical CPUs
def test_mirrored_strategy_over_two_logical_cpus(tmp_path):
    out = tmp_path / "outputs"
    out.mkdir()
    result = train(out, "trainer.strategy=mirrored", "trainer.cpu_devices=2", "trainer.epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    status = json.loads((only_run_dir(out) / "run.json").read_text())
    assert status["status"] == "completed" and status["replicas"] == 2


@pytest.mark.slow
def test_a_table_that_cannot_be_written_leaves_the_run_completed(tmp_path):
    out = tmp_path / "outputs"
    out.mkdir()
    blocked = out / "not-a-file.csv"
    blocked.mkdir()  # appending to a directory fails
    result = train(out, "trainer.epochs=1", f"paths.experiments_table={blocked}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "was not appended" in result.stdout + result.stderr
    run_dir = only_run_dir(out)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
    assert (run_dir / "metrics.json").exists()
