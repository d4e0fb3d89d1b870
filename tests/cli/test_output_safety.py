"""No command removes or replaces what it did not write (issue 23, items 1 and 3).

Every command that takes an output folder is run through the real CLI with a foreign file and a
completed run already in that folder: it refuses in one line, or writes beside them, and both
survive byte for byte. Whole outputs (export, predict) are replaced only whole; the experiment
table's rows land on their own line whatever state the file is in."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from conftest import CASES, break_truncate, make_root, run_cli


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return make_root(tmp_path_factory.mktemp("data") / "root")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def occupied(folder: Path, run: Path) -> dict[str, bytes]:
    """``folder`` holding a foreign file and a completed run; what must survive, byte for byte."""
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("the user's own notes\n")
    shutil.copytree(run, folder / "runA")
    return snapshot(folder)


def refused_in_one_line(result, command: str, folder: Path) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if f"brats-seg {command}" in line]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert str(folder) in lines[0] and ("notes.txt" in lines[0] or "runA" in lines[0]), lines[0]


def perfect_predictions(root: Path, where: Path) -> Path:
    where.mkdir()
    for case in CASES:
        shutil.copy(root / case / f"{case}_seg.nii.gz", where / f"{case}_seg.nii.gz")
    return where


# (command line with OUT and RUN and ROOT and PRED to fill in, whether it writes beside or refuses)
COMMANDS = {
    "export": (["export", "run=RUN", "out=OUT"], "refuses"),
    "export-its-own-run": (["export", "run=OUT/runA", "out=OUT"], "refuses"),
    "predict": (["predict", "run=RUN", "input=ROOT", "output=OUT"], "refuses"),
    "evaluate-ensemble": (["evaluate", "run=RUN", "out=OUT"], "refuses"),
    "evaluate-predictions": (["evaluate", "pred=PRED", "ref=ROOT", "out=OUT"], "beside"),
    "evaluate-predictions-in-place": (["evaluate", "pred=OUT", "ref=ROOT"], "beside"),
    "eda": (["eda", "out=OUT"], "refuses"),
    "view": (["view", "predictions=PRED", "input=ROOT", "out=OUT"], "refuses"),
    "view-run": (["view", "run=RUN", "out=OUT"], "refuses"),
    "report": (["report", "RUN", "out=OUT", "overlays=false", "bootstrap=100"], "beside"),
    "report-default-out": (["report", "OUT", "overlays=false", "bootstrap=100"], "beside"),
    "synth": (["synth", "out=OUT", "cases=1", "shape=[32,32,16]"], "beside"),
    "table": (["table", "RUN", "out=OUT", "printed=false"], "beside"),
    "table-default-out": (["table", "OUT", "printed=false"], "beside"),
    "cv-summary": (["cv-summary", "RUN", "out=OUT"], "beside"),
    "cv-summary-default-out": (["cv-summary", "OUT"], "beside"),
    "compare": (["compare", "RUN", "OUT/runA", "out=OUT", "bootstrap=100"], "beside"),
}


# export and predict start TensorFlow (over 4 s): the slow lane's
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n in ("export", "predict") else n
        for n in COMMANDS
    ],
)
def test_no_command_removes_what_it_did_not_write(name, tiny_trained_run, root, tmp_path):
    args, outcome = COMMANDS[name]
    out = tmp_path / "OUT"
    before = occupied(out, tiny_trained_run)
    if name == "evaluate-predictions-in-place":  # the predictions are the folder's own
        perfect_predictions(root, out / "preds")
        before = snapshot(out)
    fill = {
        "OUT": str(out),
        "RUN": str(tiny_trained_run),
        "ROOT": str(root),
        "PRED": str(tmp_path / "preds"),
    }
    if "PRED" in " ".join(args):
        perfect_predictions(root, tmp_path / "preds")
    line = []
    for arg in args:
        for key, value in fill.items():
            arg = arg.replace(key, value)
        line.append(arg)
    if args[0] in ("export", "predict", "evaluate", "eda", "synth", "view"):  # Hydra apps
        line.append(f"paths.output_root={tmp_path / 'outputs'}")
    result = run_cli(*line, cwd=tmp_path)
    if outcome == "refuses":
        refused_in_one_line(result, args[0], out)
    else:
        assert result.returncode == 0, result.stderr[-3000:]
    after = snapshot(out)
    assert {k: after.get(k) for k in before} == before
    if outcome == "beside":  # and a second run replaces only its own files
        again = run_cli(*line, cwd=tmp_path)
        assert again.returncode == 0, again.stderr[-3000:]
        assert {k: v for k, v in snapshot(out).items() if k in before} == before


def test_a_file_of_the_same_name_that_the_command_did_not_write_is_refused(
    tiny_trained_run, tmp_path
):
    out = tmp_path / "tables"
    out.mkdir()
    (out / "results.md").write_text("my own results, typed by hand\n")
    result = run_cli("table", str(tiny_trained_run), f"out={out}", "printed=false", cwd=tmp_path)
    assert result.returncode != 0
    assert "results.md" in result.stderr and "Traceback" not in result.stderr
    assert (out / "results.md").read_text() == "my own results, typed by hand\n"
    assert sorted(p.name for p in out.iterdir()) == ["results.md"]


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_export_replaces_only_its_own_earlier_export(tiny_trained_run, tmp_path):
    out = tmp_path / "exported"
    first = run_cli("export", f"run={tiny_trained_run}", f"out={out}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    info = (out / "export.json").read_bytes()
    second = run_cli("export", f"run={tiny_trained_run}", f"out={out}", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert (out / "export.json").read_bytes() == info
    assert (out / "savedmodel" / "saved_model.pb").is_file()
    (out / "savedmodel" / "mine.txt").write_text("added by hand\n")
    third = run_cli("export", f"run={tiny_trained_run}", f"out={out}", cwd=tmp_path)
    refused_line = [ln for ln in third.stderr.splitlines() if "brats-seg export" in ln]
    assert third.returncode != 0 and len(refused_line) == 1
    assert "savedmodel/mine.txt" in refused_line[0]
    assert (out / "savedmodel" / "mine.txt").read_text() == "added by hand\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".exported")]  # no staging


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_predict_with_a_broken_case_leaves_the_previous_output_whole(
    tiny_trained_run, root, tmp_path
):
    out = tmp_path / "predictions"
    first = run_cli(
        "predict",
        f"run={tiny_trained_run}",
        f"input={root}",
        f"output={out}",
        "montage_slices=0",
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    before = snapshot(out)
    assert "metrics.json" in before and "inference.json" in before

    broken = tmp_path / "broken"
    shutil.copytree(root, broken)
    damaged = break_truncate(broken)
    # other options than the first time, so that a rewritten file would differ from the old one
    second = run_cli(
        "predict",
        f"run={tiny_trained_run}",
        f"input={broken}",
        f"output={out}",
        "montage_slices=1",
        "tta=true",
        cwd=tmp_path,
    )
    assert second.returncode != 0
    assert damaged.name in second.stderr and "Traceback" not in second.stderr
    assert snapshot(out) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".predictions")]


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_predict_output_describes_exactly_what_is_in_it(tiny_trained_run, root, tmp_path):
    out = tmp_path / "predictions"
    first = run_cli(
        "predict",
        f"run={tiny_trained_run}",
        f"input={root}",
        f"output={out}",
        "montage_slices=0",
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    fewer = tmp_path / "fewer"
    fewer.mkdir()
    for case in CASES[:2]:
        shutil.copytree(root / case, fewer / case)
    second = run_cli(
        "predict",
        f"run={tiny_trained_run}",
        f"input={fewer}",
        f"output={out}",
        "montage_slices=0",
        cwd=tmp_path,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    scored = {p["case"] for p in json.loads((out / "metrics.json").read_text())["per_patient"]}
    on_disk = {p.name.removesuffix("_seg.nii.gz") for p in out.glob("*.nii.gz")}
    assert scored == on_disk == set(CASES[:2])  # no prediction of the first run is left
    listed = json.loads((out / "inference.json").read_text())["predictions"]
    assert set(listed) == on_disk


def test_a_row_lands_whole_after_a_torn_last_line(tmp_path):
    from brats_seg.results.experiments_table import COLUMNS, append_row

    path = tmp_path / "experiments.csv"
    append_row(path, {"run_dir": "runs/first", "model": "unet"})
    with path.open("a") as f:  # a writer killed in the middle of its row
        f.write("2026-01-01T00:00:00,runs/torn,e0")
    append_row(path, {"run_dir": "runs/after", "model": "unet"})
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == COLUMNS
    assert rows[-1][COLUMNS.index("run_dir")] == "runs/after" and len(rows[-1]) == len(COLUMNS)
    assert rows[1][COLUMNS.index("run_dir")] == "runs/first"
    assert path.read_text().endswith("\n")


def test_a_failed_staged_output_leaves_the_earlier_one_and_no_staging(tmp_path):
    from brats_seg.outputs import staged_output

    out = tmp_path / "out"
    with staged_output(out, "eda") as staging:
        (staging / "a.txt").write_text("first\n")
    with pytest.raises(RuntimeError), staged_output(out, "eda") as staging:
        (staging / "a.txt").write_text("half of the second\n")
        raise RuntimeError("killed half way")
    assert (out / "a.txt").read_text() == "first\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_one_commands_output_is_not_replaced_by_another(tmp_path):
    from brats_seg.errors import ConfigError
    from brats_seg.outputs import check_files_beside, files_beside, staged_output

    out = tmp_path / "out"
    with staged_output(out, "predict") as staging:
        (staging / "metrics.json").write_text("{}\n")
    with pytest.raises(ConfigError, match="the output of brats-seg predict"):
        check_output_dir_of("eda", out)
    with pytest.raises(ConfigError, match="metrics.json is there already"):
        check_files_beside(out, ["metrics.json"], "evaluate")
    with files_beside(out, ["results.md"], "table"):
        (out / "results.md").write_text("table\n")
    # predict may not replace the folder now: it would remove the table it did not write
    with pytest.raises(ConfigError, match="results.md"):
        check_output_dir_of("predict", out)
    assert (out / "results.md").read_text() == "table\n"


def check_output_dir_of(command: str, folder: Path) -> None:
    from brats_seg.outputs import check_output_dir

    check_output_dir(folder, command)
