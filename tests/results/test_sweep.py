"""The 22-row smoke sweep end to end.

Also the results table, skipping completed runs, and a submitit-launched sweep.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest

from conftest import SMALL_UNET, run_cli

# Sweeps of real (smoke-sized) training runs.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "outputs"
    out.mkdir()
    start = time.perf_counter()
    result = run_cli(
        "train",
        "-m",
        "experiment=glob(*)",
        "debug=smoke",
        f"paths.output_root={out}",
        cwd=out.parent,
        timeout=1800,
    )
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr[-4000:]
    yield out, out / "sweeps" / "smoke", elapsed
    for checkpoint in out.rglob(
        "*.keras"
    ):  # full-size models: several GB that pytest would keep around
        checkpoint.unlink()


def test_every_job_has_a_completed_run_folder_named_after_its_experiment(smoke_sweep):
    _, sweep, elapsed = smoke_sweep
    runs = sorted(p for p in sweep.iterdir() if (p / "run.json").exists())
    assert len(runs) == 22, [p.name for p in sweep.iterdir()]
    for run in runs:
        assert run.name.startswith("e") and run.name.endswith("-s42"), run.name
        assert json.loads((run / "run.json").read_text())["status"] == "completed"
    print(f"smoke sweep of 22 rows: {elapsed:.0f} s")


def test_table_has_22_rows_with_expected_parameters_and_measured_metrics(smoke_sweep):
    out, sweep, _ = smoke_sweep
    table_dir = out / "table"
    result = run_cli("table", str(sweep), f"out={table_dir}", cwd=out.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    with (table_dir / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["#"]) for r in rows] == list(range(1, 23))
    for row in rows:
        cfg_path = Path(row["run"]) / "config.yaml"
        from omegaconf import OmegaConf

        expected = OmegaConf.load(cfg_path).study.expected_params
        assert row["parameters (size)"].split()[0] == str(expected)
        assert row["status"] == "completed"
        for key in ("recall", "f1", "precision", "specificity", "WT Dice"):
            assert row[key] != "" and 0.0 <= float(row[key]) <= 1.0
    md = (table_dir / "results.md").read_text()
    assert (
        md.count("\n| ") == 23
    )  # header + 22 rows (the separator line starts with "| ---" too: counted once)
    assert (table_dir / "results.png").stat().st_size > 0


def test_running_the_same_sweep_again_skips_completed_runs(smoke_sweep):
    out, sweep, _ = smoke_sweep

    def written() -> dict[str, int]:
        # metrics and checkpoints, which training and evaluation write (a rerun appends to the logs)
        files = [
            p
            for run in sweep.iterdir()
            for p in [run / "metrics.json", *run.rglob("*.keras")]
            if p.exists()
        ]
        return {str(p.relative_to(sweep)): p.stat().st_mtime_ns for p in files}

    before = written()
    result = run_cli(
        "train",
        "-m",
        "experiment=glob(*)",
        "debug=smoke",
        f"paths.output_root={out}",
        cwd=out.parent,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len([name for name in before if name.endswith("metrics.json")]) == 22
    assert written() == before  # nothing trained or evaluated again


def test_table_marks_failed_unfinished_and_missing_runs(smoke_sweep, tmp_path):
    """A sweep cut short.

    Four rows have folders (completed, failed, killed, still running), the rest none yet.
    """

    import shutil

    from filelock import FileLock

    _, sweep, _ = smoke_sweep
    copy = tmp_path / "sweep"
    runs = sorted(p for p in sweep.iterdir() if (p / "run.json").exists())[:4]
    for run in runs:
        shutil.copytree(run, copy / run.name, ignore=shutil.ignore_patterns("*.keras"))
    shutil.copy(sweep / "multirun.yaml", copy / "multirun.yaml")
    failed, killed, running = (copy / run.name for run in runs[1:])
    for folder, state in (
        (failed, {"status": "failed", "error": "TrainingFailed: NaN"}),
        (killed, {"status": "running"}),
        (running, {"status": "running"}),
    ):
        status = json.loads((folder / "run.json").read_text())
        (folder / "run.json").write_text(json.dumps({**status, **state}))
    with FileLock(str(running / ".run.lock")):  # as a live training process holds it
        result = run_cli("table", str(copy), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with (copy / "results.csv").open() as f:
        rows = {r["#"]: r for r in csv.DictReader(f)}
    assert len(rows) == 22
    assert rows["1"]["status"] == "completed" and rows["1"]["f1"] != ""
    assert rows["2"]["status"] == "failed" and rows["2"]["f1"] == "" and rows["2"]["WT Dice"] == ""
    assert rows["3"]["status"] == "interrupted" and rows["3"]["f1"] == ""
    assert rows["4"]["status"] == "running" and rows["4"]["f1"] == ""
    # known from the model build, not invented
    from omegaconf import OmegaConf

    expected = OmegaConf.load(killed / "config.yaml").study.expected_params
    assert rows["3"]["parameters (size)"].startswith(f"{expected} ")
    for n in range(5, 23):
        assert rows[str(n)]["status"] == "not started" and rows[str(n)]["f1"] == "", rows[str(n)]
        assert rows[str(n)]["title"] and rows[str(n)]["loss"]
    assert "18 not started" in result.stdout


def test_one_failing_job_does_not_stop_the_sweep(tmp_path):
    out = tmp_path / "outputs"
    out.mkdir()
    result = run_cli(
        "train",
        "-m",
        "optimizer=sgd",
        "optimizer.lr=1e12,1e-3",
        "loss=weighted",
        "debug=tiny",
        "trainer.epochs=2",
        "trainer.precision=float32",
        *SMALL_UNET,
        f"paths.output_root={out}",
        cwd=tmp_path,
    )
    assert result.returncode != 0  # Hydra reports the failed job once every job has run
    runs = {
        p.name: json.loads((p / "run.json").read_text())
        for p in (out / "sweeps" / "tiny").iterdir()
        if (p / "run.json").exists()
    }
    assert len(runs) == 2, runs
    statuses = sorted(run["status"] for run in runs.values())
    assert statuses == ["completed", "failed"], runs
    failed = next(run for run in runs.values() if run["status"] == "failed")
    assert "NaN" in failed["error"]
    with (out / "experiments.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 1  # only the completed job


def test_two_experiment_sweep_through_submitits_local_executor(tmp_path):
    out = tmp_path / "outputs"
    out.mkdir()
    result = run_cli(
        "train",
        "-m",
        "experiment=e01_3pp_unet_nobridge,e03_res_unetpp_nobridge",
        "debug=smoke",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=20",
        f"paths.output_root={out}",
        cwd=tmp_path,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = out / "sweeps" / "smoke"
    for name in ("e01_3pp_unet_nobridge-s42", "e03_res_unetpp_nobridge-s42"):
        status = json.loads((sweep / name / "run.json").read_text())
        assert status["status"] == "completed", status
    assert (sweep / ".submitit").is_dir()
