"""`brats-seg evaluate pred=DIR ref=ROOT` never drops a case silently (issue 14, item 1)."""

from __future__ import annotations

import json
import shutil

import pytest

from brats_seg.metrics.regions import HD95_EMPTY

from conftest import run_cli


@pytest.fixture()
def one_prediction(real_data_root, tmp_path):
    """BraTS2021_00014's reference seg as the only prediction, plus one of a case not in root."""
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    shutil.copy(real_data_root / "BraTS2021_00014" / "BraTS2021_00014_seg.nii.gz", pred_dir)
    shutil.copy(
        real_data_root / "BraTS2021_00014" / "BraTS2021_00014_seg.nii.gz",
        pred_dir / "BraTS2021_99999_seg.nii.gz",
    )
    return pred_dir


@pytest.mark.slow  # scores real 240x240x155 volumes
def test_missing_predictions_score_zero_and_are_listed(
    one_prediction, real_data_root, real_cases, tmp_path
):
    out = tmp_path / "scores"
    result = run_cli(
        "evaluate", f"pred={one_prediction}", f"ref={real_data_root}", f"out={out}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    n = len(real_cases)
    missing = [c for c in sorted(real_cases) if c != "BraTS2021_00014"]
    assert metrics["missing"] == missing
    assert metrics["unmatched_predictions"] == ["BraTS2021_99999"]
    by_case = {p["case"]: p for p in metrics["per_patient"]}
    assert sorted(by_case) == sorted(real_cases)
    for case in missing:
        assert by_case[case]["missing"] is True
        for region in ("WT", "TC", "ET"):
            assert by_case[case][region] == {"dice": 0.0, "hd95": HD95_EMPTY}
    assert by_case["BraTS2021_00014"]["WT"]["dice"] == 1.0
    # the means are over all n reference cases: one perfect case and n - 1 zeros
    assert metrics["regions"]["WT"]["dice_mean"] == pytest.approx(1 / n)
    assert metrics["regions"]["WT"]["hd95_mean"] == pytest.approx((n - 1) * HD95_EMPTY / n)
    assert f"warning: {n - 1} of {n} reference case(s) have no prediction" in result.stderr
    assert all(case in result.stderr for case in missing)
    assert (
        "warning: 1 prediction(s) have no reference seg and are not scored: BraTS2021_99999"
        in result.stderr
    )


@pytest.mark.slow  # scores real 240x240x155 volumes
def test_allow_missing_false_exits_non_zero_with_one_line(
    one_prediction, real_data_root, real_cases, tmp_path
):
    out = tmp_path / "scores"
    result = run_cli(
        "evaluate",
        f"pred={one_prediction}",
        f"ref={real_data_root}",
        f"out={out}",
        "evaluate.allow_missing=false",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    n = len(real_cases)
    assert f"{n - 1} of {n} reference case(s)" in errors[0] and "BraTS2021_00019" in errors[0]
    assert "evaluate.allow_missing=false" in errors[0]
    assert not (out / "metrics.json").exists()
