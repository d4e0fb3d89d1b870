"""The real BraTS cases through the whole data layer (one cache build per test session).

Which cases there are, their patients and expected numbers come from
../shared/data/brats-real/PROVENANCE.md (tests/conftest.py reads it), not from this code.
"""

from __future__ import annotations

import numpy as np
import pytest

from brats_seg.data import nifti
from brats_seg.data.dataset import prepare_data

# Decodes every real BraTS case.
pytestmark = pytest.mark.slow


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


def test_all_cases_load_and_a_rerun_decodes_nothing(built, real_cfg, real_cases):
    prepared, decodes = built
    assert prepared.case_ids == sorted(real_cases)
    assert decodes == 5 * len(real_cases)  # four modalities and the seg of each case
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


def test_class_counts_and_tumour_slices_match_provenance(built, real_cases):
    prepared, _ = built
    for case_id, case in real_cases.items():
        meta = prepared.case_meta(case_id)
        z0, z1 = case.tumour_slices
        assert meta["selected"] == list(range(z0, z1 + 1)), case_id
        assert meta["class_counts"][1:] == list(case.class_counts), case_id
        assert meta["convention"] == (
            "brats2023" if case_id.startswith("BraTS-GLI") else "brats2021"
        )


def test_duplicate_pair_gives_identical_images_and_classes(built, duplicate_pair, real_cases):
    prepared, _ = built
    a, b = (prepared.case_meta(c) for c in duplicate_pair)
    assert a["fingerprint"] == b["fingerprint"]
    assert {a["convention"], b["convention"]} == {"brats2021", "brats2023"}
    xa, ya = prepared.read_slices(duplicate_pair[0])
    xb, yb = prepared.read_slices(duplicate_pair[1])
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    # one fingerprint per patient: only the pair shares one
    patients = {case.patient for case in real_cases.values()}
    assert len({prepared.case_meta(c)["fingerprint"] for c in prepared.case_ids}) == len(patients)


def test_duplicate_pair_lands_in_one_split(built, duplicate_pair, real_cases):
    prepared, _ = built
    n_patients = len({case.patient for case in real_cases.values()})
    # data/split.py's rule: val and test get round(0.2 * patients), at least 1; train the rest
    n_val = n_test = max(1, round(0.2 * n_patients))
    expected = {"train": n_patients - n_val - n_test, "val": n_val, "test": n_test}
    for seed in range(10):
        prepared.split_cfg = {**prepared.split_cfg, "seed": seed}
        split = prepared.split()
        where = {c: name for name, cases in split.items() for c in cases}
        assert where[duplicate_pair[0]] == where[duplicate_pair[1]]
        groups = {
            name: len({prepared.case_meta(c)["fingerprint"] for c in cases})
            for name, cases in split.items()
        }
        assert groups == expected


def test_real_slices_are_zscored_per_modality(built, real_data_root, real_cases):
    prepared, _ = built
    case_id = "Brats18_2013_2_1"  # the low-intensity 2018 scan
    z = real_cases[case_id].largest_tumour_slice
    x, y = prepared.read_slices(case_id)
    meta = prepared.case_meta(case_id)
    t1ce, _ = nifti.read_nifti(real_data_root / case_id / f"{case_id}_t1ce.nii.gz")
    brain = t1ce[t1ce != 0].astype(np.float64)
    row = meta["selected"].index(z)
    raw = t1ce[:, :, z].astype(np.float64)
    expected = np.where(raw != 0, (raw - brain.mean()) / brain.std(), 0.0)
    np.testing.assert_allclose(
        x[row, :, :, 1].astype(np.float64), expected, atol=2e-3 * np.abs(expected).max()
    )
    assert (x[row, :, :, 1][raw == 0] == 0).all()
    assert y.max() == 3 and y.dtype == np.uint8
