"""Scans that must not be trained on, and BraTS 2024 post-treatment labels (issue 14, item 6)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from brats_seg.config import compose
from brats_seg.data import nifti
from brats_seg.data.dataset import prepare_data
from brats_seg.data.discovery import find_case
from brats_seg.data.labels import LabelRules, labels_to_classes
from brats_seg.data.nifti import write_nifti
from brats_seg.errors import ConfigError, DataError

from conftest import blob_case, data_cfg, make_root, write_case

SHAPE = (32, 32, 16)


@pytest.mark.parametrize(
    "fill, what", [(0, "no non-zero voxel"), (7, "the same value 7 in every voxel")]
)
def test_empty_or_constant_modality_is_an_error_naming_the_file(tmp_path, fill, what):
    root = make_root(tmp_path / "data")
    t1ce = root / "Brats18_C_1" / "Brats18_C_1_t1ce.nii.gz"
    write_nifti(t1ce, np.full(SHAPE, fill, dtype=np.int16))
    with pytest.raises(DataError, match=f"{t1ce}: image has {what}") as err:
        nifti.load_case(find_case(root / "Brats18_C_1"))
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match=f"{t1ce}: image has {what}"):
        prepare_data(data_cfg(root, tmp_path / "cache"))
    assert not list((tmp_path / "cache").glob("brats-*"))


def post_treatment_case(folder):
    """A BraTS 2024 post-treatment glioma case: 2023 names, label 3 = ET, label 4 = cavity."""
    image, classes = blob_case(SHAPE, seed=2)
    case = write_case(folder, "BraTS-GLI-02105-100", image, classes, convention="brats2023")
    labels = np.asarray(nifti.read_nifti(case.seg)[0]).copy()
    cavity = np.zeros(SHAPE, dtype=bool)
    cavity[2:6, 2:6, 2:6] = True
    labels[cavity] = 4
    write_nifti(case.seg, labels)
    return case, classes, cavity


def test_resection_cavity_message_and_option(tmp_path):
    case, classes, cavity = post_treatment_case(tmp_path / "BraTS-GLI-02105-100")
    with pytest.raises(DataError) as err:
        nifti.load_case(case)
    message = str(err.value)
    assert message.startswith(f"{case.seg}: unexpected label value(s) 4")
    assert "resection cavity" in message and "BraTS 2024 post-treatment" in message
    assert "data.labels.resection_cavity=background" in message
    assert "ET is 4 in BraTS 2017-2021" not in message  # the old, wrong explanation
    loaded = nifti.load_case(case, replace(LabelRules.default(), resection_cavity="background"))
    expected = classes.copy()
    expected[cavity] = 0
    np.testing.assert_array_equal(loaded.seg, expected)


def test_resection_cavity_option_through_the_data_config(tmp_path):
    root = make_root(tmp_path / "data")
    post_treatment_case(root / "BraTS-GLI-02105-100")
    with pytest.raises(DataError, match="resection cavity"):
        prepare_data(data_cfg(root, tmp_path / "cache"))
    cfg = {**data_cfg(root, tmp_path / "cache"), "labels": {"resection_cavity": "background"}}
    prepared = prepare_data(cfg)
    assert prepared.case_meta("BraTS-GLI-02105-100")["labels"]["resection_cavity"] == "background"
    volume = prepared.load_volume("BraTS-GLI-02105-100")  # decoded again with the same rule
    assert volume.classes[2:6, 2:6, 2:6].max() == 0
    with pytest.raises(
        ConfigError, match="data.labels.resection_cavity must be one of error, background"
    ):
        prepare_data({**cfg, "labels": {"resection_cavity": "tumour"}})
    for data in ("brats", "synthetic"):
        assert compose("train", [f"data={data}"]).data.labels.resection_cavity == "error"


def test_label_3_in_2021_naming_explains_the_convention():
    with pytest.raises(
        DataError,
        match=r"s: unexpected label value\(s\) 3; BraTS 2017-2021 .*ET is 4.*convention=2023",
    ):
        labels_to_classes(np.array([0, 3], np.uint8), "brats2021", "s")
    # 2021 naming knows no resection cavity: 4 is ET whatever the option
    np.testing.assert_array_equal(
        labels_to_classes(
            np.array([0, 4], np.uint8),
            "brats2021",
            "s",
            replace(LabelRules.default(), resection_cavity="background"),
        ),
        [0, 3],
    )
