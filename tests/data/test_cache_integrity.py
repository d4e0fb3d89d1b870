"""The slice cache keys on file content and survives damaged files (issue 14, item 5)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from brats_seg.data import nifti
from brats_seg.data.dataset import prepare_data
from brats_seg.data.labels import to_convention
from brats_seg.data.nifti import write_nifti
from brats_seg.errors import DataError

from conftest import CASES, SHAPE, blob_case, data_cfg, write_case


@pytest.fixture()
def root(tmp_path):
    """Four patients in uncompressed NIfTI, so that a file can be edited keeping its size."""
    for i, case_id in enumerate(CASES):
        image, classes = blob_case(SHAPE, seed=i)
        write_case(tmp_path / "data" / case_id, case_id, image, classes, ext=".nii")
    return tmp_path / "data"


def test_an_edit_that_keeps_size_and_mtime_is_a_new_cache(root, tmp_path):
    cfg = data_cfg(root, tmp_path / "cache")
    first = prepare_data(cfg)
    seg = root / "Brats18_B_1" / "Brats18_B_1_seg.nii"
    stat = seg.stat()
    labels = to_convention(blob_case(SHAPE, seed=1)[1], "brats2021")
    labels[labels == 2] = 1  # edema relabelled as core: the same number of bytes, other content
    write_nifti(seg, labels)
    os.utime(
        seg, ns=(stat.st_atime_ns, stat.st_mtime_ns)
    )  # as `cp -p` or `rsync -a` would leave it
    assert seg.stat().st_size == stat.st_size and seg.stat().st_mtime_ns == stat.st_mtime_ns
    before = nifti.decode_count()
    second = prepare_data(cfg)
    assert second.cache_dir != first.cache_dir
    assert nifti.decode_count() > before
    old, new = first.class_counts(["Brats18_B_1"]), second.class_counts(["Brats18_B_1"])
    assert new[2] == 0 < old[2]


def test_the_preprocessing_version_is_part_of_the_key(root, tmp_path, monkeypatch):
    from brats_seg.data import cache

    cfg = data_cfg(root, tmp_path / "cache")
    first = prepare_data(cfg)
    monkeypatch.setattr(cache, "PREPROCESS_VERSION", cache.PREPROCESS_VERSION + 1)
    assert prepare_data(cfg).cache_dir != first.cache_dir


def _truncate(path: Path, keep: int = 200) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def test_truncated_slice_file_is_rebuilt_with_a_warning(root, tmp_path, capsys):
    cfg = data_cfg(root, tmp_path / "cache")
    first = prepare_data(cfg)
    x_path = first.cache_dir / "cases" / "Brats18_C_1" / "x.npy"
    expected = np.array(first.read_slices("Brats18_C_1")[0])
    _truncate(x_path)
    capsys.readouterr()
    before = nifti.decode_count()
    again = prepare_data(cfg)
    err = capsys.readouterr().err
    assert f"{x_path}: damaged cache file" in err and "rebuilding case Brats18_C_1" in err
    assert again.cache_dir == first.cache_dir
    assert nifti.decode_count() - before == 5  # only the damaged case is decoded again
    np.testing.assert_array_equal(again.read_slices("Brats18_C_1")[0], expected)
    assert not [p for p in (first.cache_dir / "cases").iterdir() if p.name.startswith(".")]


def test_reading_a_damaged_file_is_one_line_naming_it(root, tmp_path):
    prepared = prepare_data(data_cfg(root, tmp_path / "cache"))
    y_path = prepared.cache_dir / "cases" / "Brats18_A_1" / "y.npy"
    _truncate(y_path, 100)
    with pytest.raises(DataError, match=f"{y_path}: damaged cache file") as err:
        prepared.read_slices("Brats18_A_1")
    assert "\n" not in str(err.value)


def test_damaged_volume_cache_is_rebuilt(root, tmp_path, capsys):
    prepared = prepare_data(data_cfg(root, tmp_path / "cache"))
    first = prepared.load_volume("Brats18_D_1")
    x_path = prepared.cache_dir / "volumes" / "Brats18_D_1" / "x.npy"
    _truncate(x_path, 1000)  # as a full disk would leave it
    capsys.readouterr()
    again = prepared.load_volume("Brats18_D_1")
    assert f"{x_path}: damaged volume cache file" in capsys.readouterr().err
    np.testing.assert_array_equal(again.x, first.x)
    np.testing.assert_array_equal(again.classes, first.classes)
    # and the rebuilt volume is whole: a third read comes from the cache
    before = nifti.decode_count()
    prepared.load_volume("Brats18_D_1")
    assert nifti.decode_count() == before


def test_damaged_index_is_one_line_naming_it(root, tmp_path):
    prepared = prepare_data(data_cfg(root, tmp_path / "cache"))
    index = prepared.cache_dir / "index.json"
    index.write_text(index.read_text()[:50])
    with pytest.raises(DataError, match=f"{index}: damaged cache index"):
        prepare_data(data_cfg(root, tmp_path / "cache"))


def test_file_sha256_streams_the_bytes(tmp_path):
    import hashlib

    from brats_seg.data.cache import file_sha256

    path = tmp_path / "blob"
    data = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert file_sha256(path, chunk=1000) == hashlib.sha256(data).hexdigest()
    with pytest.raises(DataError, match="nope: cannot read"):
        file_sha256(tmp_path / "nope")
