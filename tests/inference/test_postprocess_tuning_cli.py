"""brats-seg evaluate run=RUN tune_postprocess=true stores a tuned post-processing in the run, and
brats-seg predict applies it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brats_seg.data.labels import LABEL_TO_CLASS, NAMING_LABELS
from brats_seg.inference.postprocess import PostprocessSettings, postprocess
from brats_seg.metrics.lesions import connected_lesions

from conftest import run_cli


def _run_copy(tiny_trained_run: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(tiny_trained_run, run)
    return run


def _input_case(tiny_trained_run: Path) -> Path:
    """One synthetic case folder of the data the tiny run was trained on."""
    (root,) = [p for p in (tiny_trained_run.parent / "cache" / "synthetic").iterdir() if p.is_dir()]
    return sorted(p for p in root.iterdir() if p.is_dir())[0]


def _classes(folder: Path) -> np.ndarray:
    (path,) = sorted(folder.glob("*_seg.nii.gz"))
    labels = np.asarray(nib.load(str(path)).dataobj)
    lut = LABEL_TO_CLASS[NAMING_LABELS["brats2021"]]
    classes = np.zeros(labels.shape, dtype=np.uint8)
    for label, cls in lut.items():
        classes[labels == label] = cls
    return classes


def _one_line_error(result) -> str:
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("brats-seg")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def test_tuning_refuses_a_run_without_validation_patients(tiny_trained_run, tmp_path):
    run = _run_copy(tiny_trained_run, tmp_path)
    split = json.loads((run / "split.json").read_text())
    split["train"], split["val"] = split["train"] + split["val"], []
    (run / "split.json").write_text(json.dumps(split))
    result = run_cli("evaluate", f"run={run}", "tune_postprocess=true", cwd=tmp_path)
    line = _one_line_error(result)
    assert str(run) in line and "no validation patients" in line
    assert not (run / "postprocess.json").exists()


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_predict_requires_a_tuned_choice_only_when_asked(tiny_trained_run, tmp_path):
    result = run_cli(
        "predict",
        f"run={tiny_trained_run}",
        f"input={_input_case(tiny_trained_run)}",
        f"output={tmp_path / 'out'}",
        "tuned_postprocess=true",
        cwd=tmp_path,
    )
    line = _one_line_error(result)
    assert "no postprocess.json" in line and "tune_postprocess=true" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_tuned_choice_is_stored_in_the_run_and_applied_by_predict(tiny_trained_run, tmp_path):
    run = _run_copy(tiny_trained_run, tmp_path)
    split = json.loads((run / "split.json").read_text())
    result = run_cli("evaluate", f"run={run}", "tune_postprocess=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "postprocess.json" in result.stdout and "WT:" in result.stdout
    record = json.loads((run / "postprocess.json").read_text())
    assert record["cases"] and set(record["cases"]) <= set(split["val"])
    assert not set(record["cases"]) & set(split["test"])  # never the patients a table reports
    assert record["run_check"]["checkpoint"] == "best.keras"
    assert all(len(r["grid"]) == 6 * 8 for r in record["regions"].values())
    PostprocessSettings.from_cfg(record["settings"])

    case = _input_case(tiny_trained_run)
    raw, tuned = tmp_path / "raw", tmp_path / "tuned"
    result = run_cli(
        "predict", f"run={run}", f"input={case}", f"output={raw}", "tuned_postprocess=false",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((raw / "inference.json").read_text())["postprocess_tuned"] is None
    predicted = _classes(raw)
    labels, count = connected_lesions(predicted > 0)
    assert count, "the tiny model predicts no tumour on this case"
    # a stored choice that keeps the largest predicted lesion and drops the rest
    largest = int(np.bincount(labels.ravel())[1:].max())
    record["settings"] = PostprocessSettings(min_component=largest).as_dict()
    (run / "postprocess.json").write_text(json.dumps(record))
    result = run_cli("predict", f"run={run}", f"input={case}", f"output={tuned}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "post-processing tuned on" in result.stdout
    applied = _classes(tuned)
    np.testing.assert_array_equal(
        applied, postprocess(predicted, PostprocessSettings(min_component=largest))
    )
    _, kept = connected_lesions(applied > 0)
    assert kept == 1 and np.count_nonzero(applied) == largest
    used = json.loads((tuned / "inference.json").read_text())
    assert used["postprocess"]["min_component"] == largest
    assert used["postprocess_tuned"]["file"] == str((run / "postprocess.json").resolve())
    assert used["postprocess_tuned"]["cases"] == record["cases"]
