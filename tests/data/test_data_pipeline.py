"""tf.data pipeline over the slice cache.

Shapes, one-hot, epoch coverage, determinism, augmentation.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from brats_seg.data import cache
from brats_seg.data.dataset import PreparedData, prepare_data
from brats_seg.data.settings import PreprocessSettings, SelectionSettings
from brats_seg.errors import DataError

from conftest import augment_cfg, blob_case, write_case

tf = pytest.importorskip("tensorflow")

from brats_seg.data.pipeline import make_dataset  # noqa: E402  (TensorFlow first)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> PreparedData:
    """Three tiny NIfTI cases through the real cache builder (tumour rule)."""
    root = tmp_path_factory.mktemp("pipe-data")
    for i in range(3):
        image, classes = blob_case((32, 32, 12), seed=10 + i)
        write_case(root / f"Brats18_P_{i}", f"Brats18_P_{i}", image, classes)
    return prepare_data(
        {
            "name": "brats",
            "root": str(root),
            "cache_dir": str(root / "cache"),
            "workers": 1,
            "selection": {"rule": "tumour"},
            "preprocess": {"normalization": "zscore"},
        }
    )


def handmade_cache(path: Path, slices: int = 10, size: int = 32) -> PreparedData:
    """A cache written directly.

    Channel 0 of x holds the class map, so augmented pairs can be checked.
    """
    rng = np.random.default_rng(0)
    y = np.zeros((slices, size, size), np.uint8)
    block = size // 2
    for k in range(slices):  # an edema block holding an enhancing block holding a necrotic one
        r0, c0 = rng.integers(4, size - block - 4, 2)
        y[k, r0 : r0 + block, c0 : c0 + block] = 2
        y[k, r0 + 4 : r0 + block - 4, c0 + 4 : c0 + block - 4] = 3
        y[k, r0 + 8 : r0 + block - 8, c0 + 8 : c0 + block - 8] = 1
    x = np.ones((slices, size, size, 4), np.float32)
    x[..., 0] = y
    x[:, :2] = 0  # a background band
    meta = {
        "case_id": "H_1",
        "convention": "brats2021",
        "fingerprint": "h",
        "slice_shape": [size, size, 4],
        "selected": list(range(slices)),
        "class_counts": np.bincount(y.ravel(), minlength=4).tolist(),
    }
    cache.write_case_entry(path, meta, x, y)
    cache.write_index(
        path,
        {
            "name": "hand",
            "root": str(path),
            "preprocess": PreprocessSettings.default().as_dict(),
            "selection": SelectionSettings("tumour", 0).as_dict(),
            "cases": {"H_1": meta},
        },
    )
    return PreparedData.open(path)


def epoch(ds) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def test_shapes_dtypes_and_one_hot(prepared):
    ids = prepared.case_ids
    ds = make_dataset(prepared, ids, 4, shuffle=False, seed=0)
    assert ds.element_spec[0].shape.as_list() == [None, 32, 32, 4]
    assert ds.element_spec[1].shape.as_list() == [None, 32, 32, 4]
    x, y = epoch(ds)
    assert x.dtype == np.float32 and y.dtype == np.float32
    assert set(np.unique(y).tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(y.sum(-1), 1.0)
    expected_x = np.concatenate([prepared.read_slices(c)[0] for c in ids]).astype(np.float32)
    expected_y = np.concatenate([prepared.read_slices(c)[1] for c in ids])
    np.testing.assert_array_equal(x, expected_x)  # unshuffled: cache order
    np.testing.assert_array_equal(y.argmax(-1), expected_y)


def test_every_slice_once_per_epoch_reshuffled_and_deterministic(prepared):
    ids = prepared.case_ids
    total = prepared.slice_count(ids)
    reference = Counter(
        s.tobytes() for c in ids for s in prepared.read_slices(c)[0].astype(np.float32)
    )
    ds = make_dataset(prepared, ids, 5, shuffle=True, seed=3)
    first, second = epoch(ds), epoch(ds)
    for x, _ in (first, second):
        assert len(x) == total
        assert Counter(s.tobytes() for s in x) == reference
    assert not np.array_equal(first[0], second[0])  # a new order each epoch
    twin = make_dataset(prepared, ids, 5, shuffle=True, seed=3)
    np.testing.assert_array_equal(epoch(twin)[0], first[0])
    np.testing.assert_array_equal(epoch(twin)[0], second[0])
    other = make_dataset(prepared, ids, 5, shuffle=True, seed=4)
    assert not np.array_equal(epoch(other)[0], first[0])


def test_batches_and_repeat(prepared):
    ids = prepared.case_ids[:2]
    total = prepared.slice_count(ids)
    sizes = [int(x.shape[0]) for x, _ in make_dataset(prepared, ids, 8, shuffle=True, seed=0)]
    assert sizes == [8] * (total // 8) + ([total % 8] if total % 8 else [])
    repeated = make_dataset(prepared, ids, 8, shuffle=True, seed=0, repeat=True)
    assert sum(int(x.shape[0]) for x, _ in repeated.take(len(sizes) * 3)) == 3 * total


def test_autotuner_is_off_so_destroying_an_iterator_never_waits(prepared):
    """tf.data's autotuner makes a destroyed iterator wait for its optimisation loop's sleep (up to
    a minute; docs/performance.md); the pipeline fixes its parallelism instead."""
    ds = make_dataset(prepared, prepared.case_ids[:1], 4, shuffle=True, seed=0, repeat=True)
    assert ds.options().autotune.enabled is False
    augmented = make_dataset(
        prepared,
        prepared.case_ids[:1],
        4,
        shuffle=True,
        seed=0,
        augment_cfg=augment_cfg(enabled=True),
    )
    assert augmented.options().autotune.enabled is False
    assert next(iter(augmented))[0].shape[0] == 4


def test_empty_selection_names_split_and_rule(tmp_path):
    root = tmp_path / "data"
    for i in range(3):
        image, classes = blob_case((32, 32, 8), seed=i)
        write_case(root / f"Brats18_E_{i}", f"Brats18_E_{i}", image, classes)
    data = prepare_data(
        {
            "name": "brats",
            "root": str(root),
            "cache_dir": str(tmp_path / "cache"),
            "workers": 1,
            "selection": {"rule": "threshold", "threshold": 5000},
        }
    )
    assert data.slice_count(data.case_ids) == 0
    with pytest.raises(
        DataError, match="no slices selected in the val split.*threshold=5000"
    ) as err:
        make_dataset(data, data.case_ids[:1], 2, shuffle=True, seed=0, split_name="val")
    assert "\n" not in str(err.value)


def test_flip_augmentation_moves_images_and_labels_together(tmp_path):
    data = handmade_cache(tmp_path / "hand")
    cfg = augment_cfg(enabled=True, flip=True, rotation_deg=0.0, scale=0.0, intensity=0.0)
    plain_x, plain_y = epoch(make_dataset(data, ["H_1"], 4, shuffle=False, seed=0))
    aug_x, aug_y = epoch(make_dataset(data, ["H_1"], 4, shuffle=False, seed=0, augment_cfg=cfg))
    flipped = 0
    for k in range(len(plain_x)):
        if np.array_equal(aug_x[k], plain_x[k]):
            np.testing.assert_array_equal(aug_y[k], plain_y[k])
        else:
            np.testing.assert_array_equal(aug_x[k], plain_x[k][::-1])
            np.testing.assert_array_equal(aug_y[k], plain_y[k][::-1])
            flipped += 1
    assert 0 < flipped < len(plain_x)


def test_rotation_and_scaling_move_images_and_labels_together(tmp_path):
    data = handmade_cache(tmp_path / "hand", slices=16, size=48)
    cfg = augment_cfg(enabled=True, flip=True, rotation_deg=20.0, scale=0.2, intensity=0.0)
    _, plain_y = epoch(make_dataset(data, ["H_1"], 8, shuffle=False, seed=1))
    x, y = epoch(make_dataset(data, ["H_1"], 8, shuffle=False, seed=1, augment_cfg=cfg))
    labels = y.argmax(-1)
    np.testing.assert_array_equal(y.sum(-1), 1.0)
    assert np.mean(labels != plain_y.argmax(-1)) > 0.02  # the slices really moved
    # channel 0 carried the class map: bilinear image vs nearest labels agree except along block
    # edges (about 0.9 here; transforming the image but not the labels gives about 0.6)

    union = (labels > 0) | (x[..., 0] > 0.5)
    assert np.mean(np.rint(x[..., 0])[union] == labels[union]) > 0.8
    # what the rotation brought in from outside the slice is zero in both
    assert ((x[..., 1] == 0) <= (labels == 0)).all()


def test_intensity_jitter_keeps_background_and_is_seeded(tmp_path):
    data = handmade_cache(tmp_path / "hand", slices=16)
    cfg = augment_cfg(enabled=True, flip=False, rotation_deg=0.0, scale=0.0, intensity=0.2)
    plain_x, plain_y = epoch(make_dataset(data, ["H_1"], 8, shuffle=False, seed=1))
    ds = make_dataset(data, ["H_1"], 8, shuffle=False, seed=1, augment_cfg=cfg)
    x, y = epoch(ds)
    np.testing.assert_array_equal(y, plain_y)
    # outside the brain (every channel 0, as preprocessing defines it) stays exactly 0
    background = (plain_x == 0).all(axis=-1)
    assert background.any() and (x[background] == 0).all()
    # channel 1 is all ones inside the brain: each slice gets one gain*1+shift within 1 +- 0.4
    for k in range(len(x)):
        values = np.unique(x[k, :, :, 1][plain_x[k, :, :, 1] != 0])
        assert len(values) == 1 and 0.6 <= values[0] <= 1.4
    np.testing.assert_array_equal(
        epoch(make_dataset(data, ["H_1"], 8, shuffle=False, seed=1, augment_cfg=cfg))[0], x
    )
    assert not np.array_equal(epoch(ds)[0], x)  # next epoch: new draws


def test_parallel_build_after_tensorflow_import_uses_forkserver(tmp_path):
    from brats_seg.data import nifti
    from brats_seg.data.cache import worker_context

    assert (
        worker_context().get_start_method() == "forkserver"
    )  # TensorFlow is imported in this module
    root = tmp_path / "data"
    for i in range(3):
        image, classes = blob_case((32, 32, 8), seed=20 + i)
        write_case(root / f"Brats18_F_{i}", f"Brats18_F_{i}", image, classes)
    cfg = {
        "name": "brats",
        "root": str(root),
        "cache_dir": str(tmp_path / "cache"),
        "selection": {"rule": "tumour"},
    }
    before = nifti.decode_count()
    two = prepare_data({**cfg, "workers": 2})
    assert nifti.decode_count() - before == 15
    one = prepare_data({**cfg, "cache_dir": str(tmp_path / "cache1"), "workers": 1})
    assert one.metas == two.metas
