"""Slice cache.

Build, reuse without decoding, keys, atomic failure, volumes, concurrent builders.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from brats_seg.data import nifti
from brats_seg.data.dataset import PreparedData, prepare_data
from brats_seg.data.discovery import find_cases
from brats_seg.data.preprocess import preprocess_case
from brats_seg.data.selection import select_slices
from brats_seg.data.settings import PreprocessSettings, SelectionSettings
from brats_seg.errors import ConfigError, DataError

from conftest import (
    CASES,
    SHAPE,
    break_affine,
    break_label5,
    break_missing_t2,
    break_nan,
    break_shape,
    break_truncate,
    data_cfg,
    leftovers,
    make_root,
)


@pytest.fixture()
def root(tmp_path):
    return make_root(tmp_path / "data")


def test_build_contents_match_preprocessing(root, tmp_path):
    cfg = data_cfg(root, tmp_path / "cache", **{"preprocess.fifth_channel": "flair_edges"})
    before = nifti.decode_count()
    prepared = prepare_data(cfg)
    assert nifti.decode_count() - before == 25
    assert prepared.case_ids == sorted(CASES + ["BraTS-GLI-00009-000"])
    assert prepared.input_shape == (32, 32, 5) and prepared.num_classes == 4
    assert prepared.cache_dir.parent == (tmp_path / "cache").resolve()
    for case in find_cases(root):
        prep = preprocess_case(nifti.load_case(case), PreprocessSettings.from_data_cfg(cfg))
        selected = select_slices(prep.y, prep.brain_pixels, SelectionSettings("threshold", 20))
        assert len(selected) > 0
        meta = prepared.case_meta(case.case_id)
        assert meta["selected"] == selected.tolist() and meta["convention"] == case.convention
        assert meta["full_shape"] == list(SHAPE) and meta["crop_box"] is None
        x, y = prepared.read_slices(case.case_id)
        assert x.dtype == np.float16 and isinstance(x, np.memmap)
        np.testing.assert_array_equal(x, prep.x[selected].astype(np.float16))
        np.testing.assert_array_equal(y, prep.y[selected])
        counts = np.bincount(prep.y[selected].ravel(), minlength=4)
        assert meta["class_counts"] == counts.tolist()
    ids = prepared.case_ids
    assert prepared.slice_count(ids) == sum(len(prepared.case_meta(c)["selected"]) for c in ids)
    total = sum(np.asarray(prepared.case_meta(c)["class_counts"]) for c in ids)
    np.testing.assert_array_equal(prepared.class_counts(ids), total)
    assert prepared.class_counts(ids).dtype == np.int64


def test_second_prepare_decodes_nothing_and_settings_change_the_key(root, tmp_path):
    cfg = data_cfg(root, tmp_path / "cache")
    first = prepare_data(cfg)
    before = nifti.decode_count()
    again = prepare_data(cfg)
    assert nifti.decode_count() == before
    assert again.cache_dir == first.cache_dir and again.metas == first.metas
    changed = prepare_data(
        data_cfg(root, tmp_path / "cache", **{"preprocess.normalization": "minmax"})
    )
    assert changed.cache_dir != first.cache_dir
    assert nifti.decode_count() - before == 25
    reselected = prepare_data(data_cfg(root, tmp_path / "cache", **{"selection.threshold": 10}))
    assert reselected.cache_dir not in (first.cache_dir, changed.cache_dir)
    # unused options do not change the key
    same = prepare_data(data_cfg(root, tmp_path / "cache", **{"preprocess.crop.size": [48, 48]}))
    assert same.cache_dir == first.cache_dir
    # the key follows the files' content: touching a file (new mtime) does not change it
    seg = root / "Brats18_B_1" / "Brats18_B_1_seg.nii.gz"
    os.utime(seg, ns=(seg.stat().st_atime_ns, seg.stat().st_mtime_ns + 10**9))
    before = nifti.decode_count()
    assert prepare_data(cfg).cache_dir == first.cache_dir
    assert nifti.decode_count() == before


def test_two_workers_build_the_same_cache(root, tmp_path):
    one = prepare_data(data_cfg(root, tmp_path / "c1", workers=1))
    before = nifti.decode_count()
    two = prepare_data(data_cfg(root, tmp_path / "c2", workers=2))
    assert nifti.decode_count() - before == 25  # decodes in worker processes are counted too
    assert one.metas == two.metas
    for case_id in one.case_ids:
        for a, b in zip(one.read_slices(case_id), two.read_slices(case_id), strict=True):
            np.testing.assert_array_equal(a, b)


def test_split_keeps_identical_cases_together(root, tmp_path):
    prepared = prepare_data(data_cfg(root, tmp_path / "cache"))
    assert (
        prepared.case_meta("Brats18_A_1")["fingerprint"]
        == prepared.case_meta("BraTS-GLI-00009-000")["fingerprint"]
    )
    for seed in range(8):
        prepared.split_cfg = {**prepared.split_cfg, "seed": seed}
        split = prepared.split()
        where = {c: name for name, cases in split.items() for c in cases}
        assert where["Brats18_A_1"] == where["BraTS-GLI-00009-000"]
        assert sorted(where) == prepared.case_ids and all(split.values())


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize(
    "breaker",
    [break_truncate, break_label5, break_shape, break_nan, break_affine, break_missing_t2],
)
def test_bad_case_raises_one_line_and_leaves_no_cache(root, tmp_path, breaker, workers):
    named = breaker(root)
    cache_dir = tmp_path / "cache"
    with pytest.raises(DataError) as err:
        prepare_data(data_cfg(root, cache_dir, workers=workers))
    message = str(err.value)
    assert "\n" not in message and str(named) in message
    assert leftovers(cache_dir) == []


def test_case_without_segmentation(root, tmp_path):
    (root / "Brats18_B_1" / "Brats18_B_1_seg.nii.gz").unlink()
    with pytest.raises(
        DataError, match="case Brats18_B_1 has no segmentation; needed for training"
    ):
        prepare_data(data_cfg(root, tmp_path / "cache"))
    assert leftovers(tmp_path / "cache") == []


def test_config_errors(root, tmp_path):
    with pytest.raises(ConfigError, match="data.cases: no case Brats18_Z_9"):
        prepare_data(data_cfg(root, tmp_path / "cache", cases=["Brats18_A_1", "Brats18_Z_9"]))
    with pytest.raises(DataError, match="data.root .*: no such folder"):
        prepare_data(data_cfg(tmp_path / "absent", tmp_path / "cache"))
    subset = prepare_data(
        data_cfg(root, tmp_path / "cache", cases=["Brats18_C_1", "Brats18_A_1", "Brats18_B_1"])
    )
    assert subset.case_ids == ["Brats18_A_1", "Brats18_B_1", "Brats18_C_1"]


def test_composed_brats_config(root, tmp_path):
    from brats_seg.config import compose

    cfg = compose(
        "train",
        [
            "data=brats",
            f"data.root={root}",
            f"paths.cache_dir={tmp_path / 'cache'}",
            "data.selection.rule=tumour",
            "data.workers=1",
        ],
    )
    prepared = prepare_data(cfg.data)
    assert prepared.selection == SelectionSettings("tumour", 0)
    assert prepared.split_cfg["seed"] == cfg.seed
    assert set(prepared.split()) == {"train", "val", "test"}
    missing = compose("train", ["data=brats"])
    with pytest.raises(ConfigError, match="data.root is not set"):
        prepare_data(missing.data)


def test_volume_cache_decodes_once(tmp_path):
    # 40x40 slices cropped to 32x32: the crop cuts a little brain, no tumour
    root = make_root(tmp_path / "data", shape=(40, 40, 16))
    cfg = data_cfg(
        root,
        tmp_path / "cache",
        **{"preprocess.crop.enabled": True, "preprocess.crop.size": [32, 32]},
    )
    prepared = prepare_data(cfg)
    case = next(c for c in find_cases(root) if c.case_id == "Brats18_B_1")
    loaded = nifti.load_case(case)
    prep = preprocess_case(loaded, PreprocessSettings.from_data_cfg(cfg))
    before = nifti.decode_count()
    first = prepared.load_volume("Brats18_B_1")
    assert nifti.decode_count() - before == 5
    again = prepared.load_volume("Brats18_B_1")
    assert nifti.decode_count() - before == 5
    for volume in (first, again):
        x, classes, meta = volume
        assert x.dtype == np.float32 and x.shape == (16, 32, 32, 4)
        np.testing.assert_array_equal(x, prep.x.astype(np.float16).astype(np.float32))
        np.testing.assert_array_equal(classes, loaded.seg)
        assert meta["crop_box"] == list(prep.crop_box) and meta["full_shape"] == [40, 40, 16]
        assert meta["crop_cut"]["brain"] == prep.cut_brain > 0 and meta["crop_cut"]["tumour"] == 0
    assert not list((prepared.cache_dir / "volumes").glob(".*"))  # no temporary folder left


def _prepare_in_child(cfg: dict, results) -> None:
    before = nifti.decode_count()
    prepared = prepare_data(cfg)
    results.put((str(prepared.cache_dir), nifti.decode_count() - before))


def test_concurrent_builders_share_one_build(root, tmp_path):
    cfg = data_cfg(root, tmp_path / "cache")
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    children = [context.Process(target=_prepare_in_child, args=(cfg, results)) for _ in range(2)]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    assert len({path for path, _ in outcomes}) == 1
    assert sorted(n for _, n in outcomes) == [0, 25]  # one built, the other waited and reused it
    assert PreparedData.open(Path(outcomes[0][0])).case_ids == sorted(
        CASES + ["BraTS-GLI-00009-000"]
    )
    assert not list((tmp_path / "cache").glob(".building-*"))


@pytest.mark.parametrize("profile, shape", [("tiny", (32, 32, 4)), ("smoke", (64, 64, 4))])
def test_synthetic_data_through_the_composed_debug_profiles(tmp_path, profile, shape):
    from brats_seg.config import compose

    cfg = compose("train", [f"debug={profile}", f"paths.cache_dir={tmp_path / 'cache'}"])
    prepared = prepare_data(cfg.data)
    assert len(prepared.case_ids) == cfg.data.synth.cases
    assert prepared.input_shape == shape
    assert prepared.root.is_relative_to((tmp_path / "cache").resolve())
    assert all(prepared.split().values())
    before = nifti.decode_count()
    assert prepare_data(cfg.data).cache_dir == prepared.cache_dir
    assert nifti.decode_count() == before
