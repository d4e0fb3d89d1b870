"""Lesion-wise metrics through the commands: train/evaluate (metrics.json, metrics.md), the table,
and `brats-seg evaluate pred= ref=` against the official package's stored values."""

from __future__ import annotations

import csv
import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from conftest import FIXTURES, lesion_perturbations, run_cli

REFERENCE = FIXTURES / "lesion_reference.json"


@pytest.fixture
def tiny_run(tiny_trained_run, tmp_path):
    """A copy of the session's tiny run in OUT/tiny-runs/, which the table reads and a new
    evaluation rewrites; returns (OUT, the run)."""
    out = tmp_path / "outputs"
    run = out / "tiny-runs" / tiny_trained_run.name
    shutil.copytree(tiny_trained_run, run)
    return out, run


@pytest.mark.slow
def test_evaluation_writes_lesionwise_scores_in_both_conventions(tiny_run):
    _, run = tiny_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["lesionwise"]) == {"brats2024", "brats2023"}
    assert "brats-evaluation" in metrics["lesionwise_conventions"]["brats2024"]
    for patient in metrics["per_patient"]:
        for region in ("WT", "TC", "ET"):
            official = patient["lesionwise"]["brats2024"][region]
            assert set(official) == {"dsc_mean", "hd95_mean", "tp", "fp", "fn"}
            assert set(patient["lesionwise"]["brats2023"][region]) == {
                "dice",
                "hd95",
                "tp",
                "fp",
                "fn",
            }
    md = (run / "metrics.md").read_text()
    assert (
        "| brats2024 | WT |" in md
        and "| brats2023 | ET |" in md
        and "BraTS 2023 metrics script" in md
    )


@pytest.mark.slow
def test_table_shows_lesionwise_columns(tiny_run):
    out, run = tiny_run
    result = run_cli("table", str(out / "tiny-runs"), f"out={out / 'table'}", cwd=out.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    with (out / "table" / "results.csv").open() as f:
        row = next(csv.DictReader(f))
    metrics = json.loads((run / "metrics.json").read_text())
    assert float(row["WT LW Dice"]) == pytest.approx(
        metrics["lesionwise"]["brats2024"]["WT"]["dsc_mean"], abs=1e-4
    )
    assert float(row["ET LW23 Dice"]) == pytest.approx(
        metrics["lesionwise"]["brats2023"]["ET"]["dice_mean"], abs=1e-4
    )


@pytest.mark.slow
def test_evaluate_can_leave_lesionwise_out(tiny_run):
    out, run = tiny_run
    result = run_cli("evaluate", f"run={run}", "lesionwise=false", cwd=out.parent, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert "lesionwise" not in metrics and "lesionwise" not in metrics["per_patient"][0]
    assert "Lesion-wise" not in (run / "metrics.md").read_text()


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_scoring_predictions_reports_the_official_packages_values(real_data_root, tmp_path):
    from brats_seg.data.discovery import find_case
    from brats_seg.data.nifti import load_case

    case_id = "BraTS2021_00019"
    loaded = load_case(find_case(real_data_root / case_id))
    source = nib.load(str(real_data_root / case_id / f"{case_id}_seg.nii.gz"))
    pred = lesion_perturbations(loaded.seg)["shifted"].copy()
    pred[pred == 3] = 4  # written in the case's own (2021) labels
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    nib.save(
        nib.Nifti1Image(pred.astype(np.uint8), source.affine, source.header),
        pred_dir / f"{case_id}_seg.nii.gz",
    )
    result = run_cli(
        "evaluate",
        f"pred={pred_dir}",
        f"ref={real_data_root}",
        f"out={tmp_path / 'scores'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "lesion-wise, official brats-evaluation package" in result.stdout
    scored = json.loads((tmp_path / "scores" / "metrics.json").read_text())
    expected = json.loads(REFERENCE.read_text())["values"][f"{case_id}/shifted"]
    patient = next(p for p in scored["per_patient"] if p["case"] == case_id)
    assert set(scored["lesionwise"]) == {"brats2024", "brats2023"}
    # the reference cases without a prediction are scored as empty predictions: every lesion missed
    for other in scored["per_patient"]:
        if other.get("missing"):
            wt = other["lesionwise"]["brats2024"]["WT"]
            assert wt["tp"] == 0 and wt["fn"] >= 1 and wt["dsc_mean"] == 0.0
    for region in ("WT", "TC", "ET"):
        got = patient["lesionwise"]["brats2024"][region]
        assert got["dsc_mean"] == pytest.approx(expected[region]["sq_dsc"], abs=1e-4)
        assert got["hd95_mean"] == pytest.approx(expected[region]["sq_hd95"], abs=0.05)
        assert (got["tp"], got["fp"], got["fn"]) == (
            expected[region]["tp"],
            expected[region]["fp"],
            expected[region]["fn"],
        )
