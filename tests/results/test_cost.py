"""Cost beside every Dice: seconds per case in metrics.json (evaluation and predict), seconds per
epoch in run.json, and the Pareto front of Dice against seconds in the table and the report."""

from __future__ import annotations

import json
import math

import pytest

from conftest import REPO_ROOT, SMALL_UNET, make_root, only_run_dir, run_cli

PHASES = {"read", "model", "scoring"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cost") / "outputs"
    out.mkdir()
    result = run_cli(
        "train",
        "debug=tiny",
        f"paths.output_root={out}",
        *SMALL_UNET,
        "trainer.epochs=2",
        cwd=out.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, only_run_dir(out)


def _check_cost(cost: dict, cases: list[str], phases: set[str]) -> None:
    assert cost["cases"] == len(cases) > 0
    assert [c["case"] for c in cost["per_case"]] == cases
    assert cost["device"].startswith("CPU: ") or " x " in cost["device"] or "GPU" in cost["device"]
    assert set(cost["phase_seconds_per_case"]) >= phases
    for entry in cost["per_case"]:
        assert entry["seconds"] > 0
        # the phases happen inside the case's wall time
        assert sum(entry.get(p, 0.0) for p in phases) <= entry["seconds"] + 1e-3
    mean = sum(c["seconds"] for c in cost["per_case"]) / len(cases)
    assert math.isclose(cost["seconds_per_case"], mean, abs_tol=1e-3)


def test_the_evaluation_at_the_end_of_train_records_seconds_per_case(tiny_trained_run):
    run_dir = tiny_trained_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    _check_cost(metrics["cost"], [p["case"] for p in metrics["per_patient"]], PHASES)


@pytest.mark.slow  # trains a two-epoch run of its own
def test_run_json_holds_training_seconds_per_epoch_and_the_device(tiny_run):
    _, run_dir = tiny_run
    info = json.loads((run_dir / "run.json").read_text())
    assert len(info["epoch_seconds"]) == 2 and all(s > 0 for s in info["epoch_seconds"])
    assert info["train_seconds"] >= 0.9 * sum(info["epoch_seconds"]) - 0.1
    from brats_seg.training.hardware import cpu_model_name

    assert cpu_model_name() in info["device"] or "GPU" in info["device"] or " x " in info["device"]


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_predict_records_seconds_per_case_with_writing(tiny_trained_run, tmp_path):
    run_dir = tiny_trained_run
    out = run_dir.parent
    roots = [p for p in (out / "cache" / "synthetic").iterdir() if p.is_dir()]
    assert len(roots) == 1, roots
    pred = tmp_path / "pred"
    result = run_cli(
        "predict", f"run={run_dir}", f"input={roots[0]}", f"output={pred}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((pred / "metrics.json").read_text())
    cases = [p["case"] for p in metrics["per_patient"]]
    _check_cost(metrics["cost"], cases, PHASES | {"write"})
    assert metrics["cost"]["check_input_seconds"] > 0
    # inference.json holds it too: written also where no case has a segmentation to score
    assert json.loads((pred / "inference.json").read_text())["cost"] == metrics["cost"]


def test_pareto_front_on_a_hand_made_set():
    from brats_seg.results.pareto import pareto_front

    points = [
        (0.80, 10.0),  # on: fastest of the good ones
        (0.85, 20.0),  # on: better Dice for more seconds
        (0.84, 25.0),  # off: (0.85, 20) beats it on both
        (0.90, 60.0),  # on: best Dice
        (0.80, 12.0),  # off: same Dice as (0.80, 10), slower
        (0.70, 5.0),  # on: fastest
        (None, 1.0),  # off: no Dice (and dominates nothing)
        (0.95, math.nan),  # off: no seconds
        (0.85, 20.0),  # on: equal to another front point, neither dominates the other
    ]
    assert pareto_front(points) == [True, True, False, True, False, True, False, False, True]
    assert pareto_front([]) == []


def test_table_and_report_show_cost_and_the_pareto_front(tiny_trained_run, tmp_path):
    run_dir = tiny_trained_run
    table = tmp_path / "table"
    result = run_cli("table", str(run_dir), f"out={table}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    import csv

    with (table / "results.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    info = json.loads((run_dir / "run.json").read_text())
    assert float(rows[0]["s/case"]) == pytest.approx(metrics["cost"]["seconds_per_case"], abs=0.01)
    assert float(rows[0]["train s"]) == pytest.approx(sum(info["epoch_seconds"]), abs=0.1)
    # a single run is on both fronts
    assert rows[0]["Pareto front"] == "s/case, train s"
    assert "| s/case | train s | Pareto front |" in (table / "results.md").read_text()

    from brats_seg.results.html_report import build_report

    page = build_report([run_dir], samples=50, overlays=False)
    assert "<h2>Dice against cost</h2>" in page
    section = page.split("<h2>Dice against cost</h2>", 1)[1].split("<h2>", 1)[0]
    assert 'alt="Dice against cost" src="data:image/png;base64,' in section
    assert metrics["cost"]["device"] in section


def test_table_marks_only_undominated_runs(tmp_path):
    """Two completed runs read back from their files: the slower one with the lower Dice is off
    both fronts."""
    from brats_seg.results.table import ResultRow, table_records

    def row(name, dice, per_case, train):
        return ResultRow(
            run_dir=tmp_path / name,
            status="completed",
            title=name,
            regions={"WT": {"dice_mean": dice}},
            seconds_per_case=per_case,
            train_seconds=train,
        )

    records = table_records(
        [row("fast", 0.8, 1.0, 50.0), row("slow", 0.7, 2.0, 100.0), row("big", 0.9, 3.0, 40.0)],
        printed=False,
    )
    assert [r["Pareto front"] for r in records] == ["s/case", "", "s/case, train s"]
    assert [r["s/case"] for r in records] == ["1.00", "2.00", "3.00"]


def test_cpu_model_name_reads_cpuinfo_and_falls_back_to_the_platform():
    from brats_seg.training.hardware import cpu_model_name

    text = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: avx2\n"
    assert cpu_model_name(text) == "AMD EPYC 7B13"
    assert cpu_model_name("processor\t: 0\n")  # not empty: the platform's name or a placeholder


def test_benchmarks_import_the_one_cpu_name_helper():
    import ast

    bench = REPO_ROOT / "benchmarks" / "bench_train.py"
    tree = ast.parse(bench.read_text())
    defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert "cpu_model_name" not in defined and "read_cpuinfo" not in defined


def test_a_resumed_run_keeps_the_epochs_it_resumes_from_and_replaces_retrained_ones(tmp_path):
    """An attempt killed during its third epoch (after recording it, before backing it up) left
    three epochs' seconds; the resumed attempt trains epoch 3 again (index 2) and then epoch 4."""
    from brats_seg.runfolder import RunFolder
    from brats_seg.training.callbacks import Throughput

    folder = RunFolder(tmp_path)
    folder.update(status="running", epoch_seconds=[5.0, 6.0, 7.0])
    clock = Throughput(4, folder=folder)
    for epoch in (2, 3):
        clock.on_epoch_begin(epoch)
        clock.on_train_batch_end(0)
        clock.on_epoch_end(epoch)
    seconds = folder.read()["epoch_seconds"]
    assert seconds[:2] == [5.0, 6.0] and len(seconds) == 4
    assert 0 <= seconds[2] < 1 and 0 <= seconds[3] < 1  # this attempt's, not the killed one's 7.0
    assert clock.last is not None


def test_scoring_a_folder_of_predictions_records_reading_and_scoring_seconds(tmp_path):
    import shutil

    from brats_seg.inference.scoring import score_prediction_folder

    root = make_root(tmp_path / "root")
    pred = tmp_path / "pred"
    pred.mkdir()
    for seg in sorted(root.rglob("*seg.nii.gz")):
        shutil.copy(seg, pred / seg.name)
    metrics = score_prediction_folder(pred, root, tmp_path / "out")
    cases = [p["case"] for p in metrics["per_patient"]]
    _check_cost(metrics["cost"], cases, {"read", "scoring"})
    assert metrics["cost"]["device"].startswith("CPU: ")
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["cost"]["seconds_per_case"] == metrics["cost"]["seconds_per_case"]
