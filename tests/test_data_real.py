"""The five real BraTS cases through the whole data layer (one cache build per test session).

Expected numbers come from ../shared/data/brats-real/PROVENANCE.md, not from this code.
"""

from __future__ import annotations

import numpy as np
import pytest

from brats_seg.data import nifti
from brats_seg.data.dataset import prepare_data

# Decodes the five real BraTS cases.
pytestmark = pytest.mark.slow

PAIR = ("BraTS2021_00000", "BraTS-GLI-00000-000")
# tumour voxels per class (NCR/NET, edema, ET) and the axial range holding tumour, from
# PROVENANCE.md

PROVENANCE = {
    "BraTS-GLI-00000-000": ((11738, 12836, 32731), (49, 95)),
    "BraTS2021_00000": ((11738, 12836, 32731), (49, 95)),
    "BraTS2021_00014": ((2, 35799, 2557), (13, 63)),
    "BraTS2021_00019": ((1605, 131017, 10375), (40, 110)),
    "Brats18_2013_2_1": ((4514, 34894, 21677), (69, 126)),
}


@pytest.fixture(scope="module")
def real_cfg(real_data_root, tmp_path_factory):
    return {
        "name": "brats",
        "root": str(real_data_root),
        "cases": None,
        "cache_dir": str(tmp_path_factory.mktemp("real-cache")),
        "workers": 2,
        "preprocess": {
            "normalization": "zscore",
            "fifth_channel": None,
            "crop": {"enabled": False},
        },
        "selection": {"rule": "tumour"},
        "split": {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 0},
    }


@pytest.fixture(scope="module")
def built(real_cfg):
    before = nifti.decode_count()
    prepared = prepare_data(real_cfg)
    return prepared, nifti.decode_count() - before


def test_all_five_cases_load_and_a_rerun_decodes_nothing(built, real_cfg):
    prepared, decodes = built
    assert prepared.case_ids == sorted(PROVENANCE)
    assert decodes == 5 * 5
    assert prepared.input_shape == (240, 240, 4)
    before = nifti.decode_count()
    again = prepare_data(real_cfg)
    assert nifti.decode_count() == before and again.cache_dir == prepared.cache_dir
    for case_id in prepared.case_ids:
        meta = prepared.case_meta(case_id)
        assert meta["full_shape"] == [240, 240, 155] and meta["spacing"] == [1.0, 1.0, 1.0]
        np.testing.assert_allclose(
            meta["affine"], [[-1, 0, 0, 0], [0, -1, 0, 239], [0, 0, 1, 0], [0, 0, 0, 1]]
        )


def test_class_counts_and_tumour_slices_match_provenance(built):
    prepared, _ = built
    for case_id, (counts, (z0, z1)) in PROVENANCE.items():
        meta = prepared.case_meta(case_id)
        assert meta["selected"] == list(range(z0, z1 + 1))
        assert meta["class_counts"][1:] == list(counts)
        assert meta["convention"] == (
            "brats2023" if case_id.startswith("BraTS-GLI") else "brats2021"
        )


def test_duplicate_pair_gives_identical_images_and_classes(built):
    prepared, _ = built
    a, b = (prepared.case_meta(c) for c in PAIR)
    assert a["fingerprint"] == b["fingerprint"]
    assert {a["convention"], b["convention"]} == {"brats2021", "brats2023"}
    xa, ya = prepared.read_slices(PAIR[0])
    xb, yb = prepared.read_slices(PAIR[1])
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    assert len({prepared.case_meta(c)["fingerprint"] for c in prepared.case_ids}) == 4


def test_duplicate_pair_lands_in_one_split(built):
    prepared, _ = built
    for seed in range(10):
        prepared.split_cfg = {"train": 0.6, "val": 0.2, "test": 0.2, "seed": seed}
        split = prepared.split()
        where = {c: name for name, cases in split.items() for c in cases}
        assert where[PAIR[0]] == where[PAIR[1]]
        groups = {
            name: len({prepared.case_meta(c)["fingerprint"] for c in cases})
            for name, cases in split.items()
        }
        assert groups == {"train": 2, "val": 1, "test": 1}


def test_real_slices_are_zscored_per_modality(built, real_data_root):
    prepared, _ = built
    case_id = "Brats18_2013_2_1"  # the low-intensity 2018 scan
    x, y = prepared.read_slices(case_id)
    meta = prepared.case_meta(case_id)
    t1ce, _ = nifti.read_nifti(real_data_root / case_id / f"{case_id}_t1ce.nii.gz")
    brain = t1ce[t1ce != 0].astype(np.float64)
    row = meta["selected"].index(101)  # PROVENANCE: the largest tumour area is on z=101
    raw = t1ce[:, :, 101].astype(np.float64)
    expected = np.where(raw != 0, (raw - brain.mean()) / brain.std(), 0.0)
    np.testing.assert_allclose(
        x[row, :, :, 1].astype(np.float64), expected, atol=2e-3 * np.abs(expected).max()
    )
    assert (x[row, :, :, 1][raw == 0] == 0).all()
    assert y.max() == 3 and y.dtype == np.uint8
