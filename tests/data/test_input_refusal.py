"""Inputs refused, not guessed (issue 23, item 4): segs that are not whole labels, label
conventions the names do not settle, two predictions for one case, predictions read in their
reference's convention, and data roots with non-ASCII names. Real NIfTI files through nibabel."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from brats_seg.config import compose, one_line
from brats_seg.data import nifti
from brats_seg.data.dataset import prepare_data
from brats_seg.data.labels import LabelRules, to_convention
from brats_seg.data.nifti import write_nifti
from brats_seg.errors import DataError
from brats_seg.inference.scoring import score_prediction_folder

from conftest import blob_case, data_cfg, leftovers, make_root, run_cli, write_case

SHAPE = (32, 32, 8)


def _case(folder, case_id, convention="brats2021", seed=0):
    image, classes = blob_case(SHAPE, seed=seed)
    assert set(np.unique(classes).tolist()) == {0, 1, 2, 3}
    return write_case(folder / case_id, case_id, image, classes, convention=convention), classes


# --- a float seg that is not whole labels ------------------------------------------------------


def test_a_linearly_resampled_seg_is_refused_naming_the_file_and_the_values(tmp_path):
    case, classes = _case(tmp_path / "data", "Brats18_F_1")
    labels = to_convention(classes, "brats2021").astype(np.float32)
    ncr = np.argwhere(classes == 1)
    labels[tuple(ncr[0])] = 1.5  # between NCR and edema
    labels[tuple(ncr[1])] = 3.5  # between the unused 3 and ET
    labels[tuple(ncr[2])] = 2.0000002  # float rounding error: still label 2
    write_nifti(case.seg, labels)
    with pytest.raises(DataError) as err:
        nifti.load_case(case)
    message = str(err.value)
    assert message.startswith(f"{case.seg}: ") and "\n" not in message
    assert "1.5" in message and "3.5" in message and "not whole labels" in message
    assert "2.0000002" not in message
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="1.5, 3.5"):
        prepare_data(data_cfg(tmp_path / "data", cache))
    assert not [p for p in leftovers(cache) if p.name.startswith("brats-")]


# --- 2023 names over 2017-2021 labels ------------------------------------------------------------


def _2017_labels_under_2023_names(folder):
    case, classes = _case(folder, "BraTS-GLI-00007-000", convention="brats2023")
    write_nifti(case.seg, to_convention(classes, "brats2021"))  # ET written as 4, no label 3
    return case, classes


def test_2023_names_over_2017_labels_name_both_readings_and_the_option(tmp_path):
    case, classes = _2017_labels_under_2023_names(tmp_path / "data")
    with pytest.raises(DataError) as err:
        nifti.load_case(case)
    message = str(err.value)
    assert message.startswith(f"{case.seg}: label 4 without label 3") and "\n" not in message
    assert "BraTS 2017-2021 labels (ET is 4) it is ET (set data.labels.convention=2017)" in message
    assert "resection cavity" in message and "data.labels.convention=2024" in message
    # what the user says settles it: 2017 keeps every ET voxel
    loaded = nifti.load_case(case, replace(LabelRules.default(), convention="2017"))
    np.testing.assert_array_equal(loaded.seg, classes)
    assert loaded.label_convention == "2017"


def test_label_convention_option_composes_and_reaches_the_cache(tmp_path):
    for data in ("brats", "synthetic"):
        assert compose("train", [f"data={data}"]).data.labels.convention == "auto"
    chosen = compose("train", ["data=brats", "data.labels.convention=2017"]).data.labels
    assert chosen.convention == "2017"  # Hydra parses 2017 as an integer: taken as the year
    with pytest.raises(Exception) as err:
        compose("train", ["data=brats", "data.labels.convention=2021"])
    assert "expected one of [auto, 2017, 2023, 2024]" in one_line(err.value)
    root = tmp_path / "data"
    _2017_labels_under_2023_names(root)
    _case(root, "Brats18_A_1", seed=1)
    _case(root, "Brats18_B_1", seed=2)
    cfg = data_cfg(root, tmp_path / "cache")
    with pytest.raises(DataError, match="label 4 without label 3"):
        prepare_data(cfg)
    prepared = prepare_data({**cfg, "labels": {**cfg["labels"], "convention": 2017}})
    volume = prepared.load_volume("BraTS-GLI-00007-000")
    assert (volume.classes == 3).sum() > 0  # ET kept
    assert prepared.case_meta("Brats18_A_1")["labels"]["convention"] == "2017"


# --- evaluate pred=DIR: two predictions for one case; the prediction's convention ----------------


def test_two_predictions_for_one_case_are_refused_naming_both(tmp_path):
    ref = tmp_path / "ref"
    case, classes = _case(ref, "Brats18_A_1")
    labels = to_convention(classes, "brats2021")
    first = write_nifti(tmp_path / "pred" / "a" / "Brats18_A_1_seg.nii.gz", labels)
    second = write_nifti(tmp_path / "pred" / "b" / "Brats18_A_1.nii.gz", np.zeros_like(labels))
    result = run_cli(
        "evaluate", f"pred={tmp_path / 'pred'}", f"ref={ref}", f"out={tmp_path / 'out'}"
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "two predictions for case Brats18_A_1" in lines[0]
    assert str(first) in lines[0] and str(second) in lines[0]
    assert not (tmp_path / "out").exists()


def _reference_2023(tmp_path):
    case, classes = _case(tmp_path / "ref", "BraTS-GLI-00003-000", convention="brats2023")
    return case, classes, to_convention(classes, "brats2023")


def test_a_prediction_is_read_in_its_references_convention_not_guessed(tmp_path):
    case, classes, labels = _reference_2023(tmp_path)
    # a BraTS 2024 model's output: the resection cavity (4) where the reference has ET, no ET
    pred = labels.copy()
    pred[labels == 3] = 4
    write_nifti(tmp_path / "pred" / "BraTS-GLI-00003-000-seg.nii.gz", pred)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataError, match="BraTS-GLI-00003-000-seg.nii.gz: unexpected label value"):
        score_prediction_folder(tmp_path / "pred", tmp_path / "ref", out)
    rules = replace(LabelRules.default(), resection_cavity="background", option="labels")
    metrics = score_prediction_folder(tmp_path / "pred", tmp_path / "ref", out, labels=rules)
    et = metrics["per_patient"][0]["ET"]
    assert et["dice"] == 0.0  # the cavity is not ET (the labels once made it a perfect ET)
    assert json.loads((out / "metrics.json").read_text())["per_patient"][0]["ET"]["dice"] == 0.0


def test_a_2017_named_references_prediction_is_read_with_et_as_4(tmp_path):
    case, classes = _case(tmp_path / "ref", "Brats18_A_1")
    # written in 2023 labels (ET = 3) beside a 2017-2021 reference: refused, not re-guessed
    write_nifti(tmp_path / "pred" / "Brats18_A_1_seg.nii.gz", to_convention(classes, "brats2023"))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataError, match=r"Brats18_A_1_seg.nii.gz: unexpected label value\(s\) 3"):
        score_prediction_folder(tmp_path / "pred", tmp_path / "ref", out)
    assert not (out / "metrics.json").exists()
    rules = replace(LabelRules.default(), convention="2023", option="labels")
    write_nifti(case.seg, to_convention(classes, "brats2023"))  # the reference in 2023 labels too
    metrics = score_prediction_folder(tmp_path / "pred", tmp_path / "ref", out, labels=rules)
    assert metrics["regions"]["ET"]["dice_mean"] == 1.0


def test_evaluate_takes_the_label_options(tmp_path):
    cfg = compose("evaluate", ["pred=p", "ref=r", "labels.convention=2024"])
    assert cfg.labels.convention == "2024" and cfg.labels.resection_cavity == "error"


# --- a data root with non-ASCII characters -------------------------------------------------------


def test_a_non_ascii_data_root_works_as_given_through_the_cli(tmp_path):
    root = make_root(tmp_path / "données patiënt")
    out = tmp_path / "eda"
    result = run_cli(
        "eda",
        "data=brats",
        f"data.root={root}",  # one argv element, as a shell passes "data.root=/…/données patiënt"
        f"out={out}",
        f"paths.output_root={tmp_path / 'outputs'}",
        "data.selection.threshold=20",
        "overlays=0",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    eda = json.loads((out / "eda.json").read_text(encoding="utf-8"))
    assert sorted(c["case_id"] for c in eda["cases"]) == sorted(
        p.name for p in root.iterdir() if p.is_dir()
    )


def test_a_non_ascii_list_item_is_refused_saying_how_to_quote(tmp_path):
    result = run_cli("train", "data=brats", "data.root=/x", "data.cases=[é1]", "--cfg", "job")
    assert result.returncode != 0
    line = result.stderr.strip()
    assert "\n" not in line and "non-ASCII characters only inside quotes" in line
    assert "data.cases=['a','é']" in line
