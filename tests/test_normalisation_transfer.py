"""scripts/normalisation_transfer.py: leave-one-patient-out voxel classifiers per normalisation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import make_root

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "normalisation_transfer.py"


def test_each_patient_is_held_out_once_and_the_tumour_is_found(tmp_path):
    root = make_root(tmp_path / "data")  # four patients, one of them twice under two names
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--root",
            str(root),
            "--samples",
            "2000",
            "--iterations",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if "WT Dice" in line]
    assert [line.split()[0] for line in lines] == [
        "zscore",
        "median_iqr",
        "rank",
        "percentile",
        "mode",
    ]
    for line in lines:
        scores = dict(part.split() for part in line.split("WT Dice ")[1].split("; ")[0].split(", "))
        assert sorted(scores) == [
            "BraTS-GLI-00009-000",
            "Brats18_B_1",
            "Brats18_C_1",
            "Brats18_D_1",
        ]
        assert all(0.0 <= float(d) <= 1.0 for d in scores.values())
    zscore = float(lines[0].rsplit("mean ", 1)[1])
    assert zscore > 0.5  # the blob cases' tumour is bright in every modality


def test_an_unknown_normalisation_is_refused(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(tmp_path), "--normalisations", "zscore,max"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "--normalisations: unknown 'max'" in result.stderr
