"""Pooled confusion matrix and BraTS region metrics, against values worked out by hand."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from brats_seg.data.labels import CLASS_NAMES
from brats_seg.errors import ConfigError, DataError
from brats_seg.metrics import (
    HD95_EMPTY,
    ConfusionAccumulator,
    confusion_matrix,
    dice,
    hd95,
    per_class_metrics,
    region_scores,
    summarise,
)
from brats_seg.metrics import confusion as confusion_module

from conftest import run_python


def test_metrics_package_does_not_import_tensorflow():
    assert "brats_seg.metrics" in sys.modules

    code = (
        "import sys, brats_seg.metrics; "
        "print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    )
    out = run_python("-c", code)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


# ---------------------------------------------------------------------------- confusion matrix

# 12 pixels, written as a 3x4 "slice".
TRUTH = np.array([[0, 0, 0, 0], [0, 1, 1, 2], [2, 2, 3, 3]], dtype=np.uint8)
PRED = np.array([[0, 0, 0, 0], [2, 1, 0, 2], [2, 3, 3, 1]], dtype=np.uint8)
# Rows truth, columns prediction, counted by hand from the pairs above.
HAND_CM = np.array([[4, 0, 1, 0], [1, 1, 0, 0], [0, 0, 2, 1], [0, 1, 0, 1]])


def test_confusion_matrix_hand_example():
    cm = confusion_matrix(TRUTH, PRED)
    assert cm.dtype == np.int64 and cm.shape == (4, 4)
    np.testing.assert_array_equal(cm, HAND_CM)
    # Any integer dtype gives the same counts.
    np.testing.assert_array_equal(
        confusion_matrix(TRUTH.astype(np.int64), PRED.astype(np.int32)), HAND_CM
    )


def test_per_class_metrics_hand_example():
    m = per_class_metrics(HAND_CM)
    # class: TP, FN, FP, TN -> 0: 4,1,1,6   1: 1,1,1,9   2: 2,1,1,8   3: 1,1,1,9
    sensitivity = [4 / 5, 1 / 2, 2 / 3, 1 / 2]
    specificity = [6 / 7, 9 / 10, 8 / 9, 9 / 10]
    f1 = [8 / 10, 2 / 4, 4 / 6, 2 / 4]
    precision = [4 / 5, 1 / 2, 2 / 3, 1 / 2]
    assert m["labels"] == list(CLASS_NAMES) == ["background", "NCR/NET", "edema", "ET"]
    assert m["sensitivity"] == pytest.approx(sensitivity)
    assert m["specificity"] == pytest.approx(specificity)
    assert m["f1"] == pytest.approx(f1)
    assert m["precision"] == pytest.approx(precision)
    assert m["col_ave"]["sensitivity"] == pytest.approx(sum(sensitivity) / 4)
    assert m["col_ave"]["specificity"] == pytest.approx(sum(specificity) / 4)
    assert m["col_ave_tumour"]["f1"] == pytest.approx(sum(f1[1:]) / 3)
    assert m["col_ave_tumour"]["precision"] == pytest.approx(sum(precision[1:]) / 3)


def test_undefined_ratios_are_nan_and_skipped_in_averages():
    # Class 3 neither present nor predicted: sensitivity 0/0, precision 0/0, F1 0/0 -> NaN;
    # specificity 1.
    cm = np.array([[5, 1, 0, 0], [0, 2, 0, 0], [1, 0, 3, 0], [0, 0, 0, 0]])
    m = per_class_metrics(cm)
    assert (
        math.isnan(m["sensitivity"][3]) and math.isnan(m["precision"][3]) and math.isnan(m["f1"][3])
    )
    assert m["specificity"][3] == 1.0
    # sensitivity: 5/6, 2/2, 3/4 -> col_ave over the three defined classes.
    assert m["col_ave"]["sensitivity"] == pytest.approx((5 / 6 + 1 + 3 / 4) / 3)
    assert m["col_ave_tumour"]["sensitivity"] == pytest.approx((1 + 3 / 4) / 2)
    empty = per_class_metrics(np.zeros((4, 4), dtype=np.int64))
    assert math.isnan(empty["col_ave"]["f1"])


def brute_force_cm(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.array([[np.count_nonzero((t == i) & (p == j)) for j in range(4)] for i in range(4)])


def test_chunked_counting_matches_brute_force(monkeypatch):
    monkeypatch.setattr(confusion_module, "_CHUNK", 1000)  # many chunks, last one partial
    rng = np.random.default_rng(0)
    t = rng.integers(0, 4, size=(7, 31, 29), dtype=np.uint8)
    p = np.where(rng.random(t.shape) < 0.7, t, rng.integers(0, 4, size=t.shape)).astype(np.uint8)
    np.testing.assert_array_equal(confusion_matrix(t, p), brute_force_cm(t, p))


def test_accumulator_pools_batches():
    rng = np.random.default_rng(1)
    t = rng.integers(0, 4, size=(6, 8, 8), dtype=np.uint8)
    p = rng.integers(0, 4, size=(6, 8, 8), dtype=np.uint8)
    acc = ConfusionAccumulator()
    for start in range(0, 6, 4):
        acc.add(t[start : start + 4], p[start : start + 4])
    np.testing.assert_array_equal(acc.matrix, brute_force_cm(t, p))
    assert acc.pixels == t.size
    assert acc.metrics()["f1"] == per_class_metrics(acc.matrix)["f1"]


def test_confusion_matrix_rejects_bad_labels():
    with pytest.raises(DataError, match="truth: class labels must be in 0..3, found 4"):
        confusion_matrix(np.array([0, 4]), np.array([0, 1]))
    with pytest.raises(DataError, match="prediction: class labels must be in 0..3, found -1"):
        confusion_matrix(np.array([0, 1]), np.array([0, -1]))
    with pytest.raises(DataError, match="shape"):
        confusion_matrix(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))


# ------------------------------------------------------------------------------ region metrics


def cube(shape=(40, 40, 40), start=(10, 10, 10), size=10) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(s, s + size) for s in start)] = True
    return mask


def test_identical_masks():
    mask = cube()
    assert dice(mask, mask) == 1.0
    assert hd95(mask, mask) == 0.0


def test_cubes_offset_by_three_voxels():
    a, b = cube(start=(10, 10, 10)), cube(start=(13, 10, 10))
    # Overlap 7x10x10 of two 1000-voxel cubes.
    assert dice(a, b) == pytest.approx(2 * 700 / 2000)
    # Surface voxels per cube: 1000 - 8^3 = 488. Distances from A's surface to B's (the same by
    # symmetry):
    # 0 for 7 slices x 36 side-ring voxels = 252;
    # the 3 slices x=10,11,12 of the ring: 3, 2, 1 (36 each);
    # the inner x=10 face (64): 3;
    # the inner x=19 face: min(distance to the y/z faces, 3) -> 1: 28, 2: 20, 3: 16.
    # Union of both directions: 0 x 504, 1 x 128, 2 x 112, 3 x 232
    # -> 95th percentile (index 926.25 of 976) = 3.
    assert hd95(a, b) == pytest.approx(3.0)


def test_hd95_is_a_percentile_not_the_maximum():
    a = cube()
    b = a.copy()
    b[35, 15, 15] = True  # one stray voxel, 16 voxels beyond A's face at x = 19
    # 488 + 488 zero distances and one of 16: the 95th percentile is 0, the Hausdorff distance
    # would be 16.
    assert hd95(a, b) == 0.0
    assert dice(a, b) == pytest.approx(2000 / 2001)


def plate(axis: int, index: int, shape=(30, 30, 30)) -> np.ndarray:
    """A one-voxel-thick 10x10 plate normal to ``axis``: every voxel is a surface voxel."""
    mask = np.zeros(shape, dtype=bool)
    box = [slice(10, 20)] * 3
    box[axis] = slice(index, index + 1)
    mask[tuple(box)] = True
    return mask


def test_anisotropic_spacing_scales_the_offset_axis():
    # Plates 2 voxels apart: every voxel's nearest counterpart sits straight across, 2 voxels away.
    spacing = (1.0, 1.0, 3.0)
    assert hd95(plate(2, 10), plate(2, 12), spacing) == pytest.approx(6.0)
    assert hd95(plate(0, 10), plate(0, 12), spacing) == pytest.approx(2.0)
    assert hd95(plate(2, 10), plate(2, 12)) == pytest.approx(2.0)
    # Cubes offset by 3 along the 3 mm axis: 9 mm.
    assert hd95(cube(start=(10, 10, 10)), cube(start=(10, 10, 13)), spacing) == pytest.approx(9.0)


def surface_points(mask: np.ndarray, spacing) -> np.ndarray:
    """Independent surface, in mm.

    Mask voxels with a 6-neighbour outside the mask (or outside the array).
    """

    padded = np.pad(mask, 1)
    inner = padded[1:-1, 1:-1, 1:-1]
    all_in = np.ones_like(mask)
    for axis in range(3):
        for shift in (-1, 1):
            all_in &= np.roll(padded, shift, axis=axis)[1:-1, 1:-1, 1:-1]
    return np.argwhere(inner & ~all_in) * np.asarray(spacing)


def test_hd95_matches_brute_force_pairwise_distances():
    rng = np.random.default_rng(3)
    grid = np.indices((18, 20, 16)).transpose(1, 2, 3, 0)
    spacing = (1.0, 1.5, 2.0)

    def blob(centre, radius):
        return np.sum(((grid - centre) / radius) ** 2, axis=-1) <= 1

    a = blob((8, 9, 7), (5, 6, 4)) | blob((3, 15, 12), (2, 3, 2))
    b = blob((9, 10, 8), (6, 5, 4)) & (rng.random(a.shape) > 0.05)
    b[0, 0, 0] = True  # touches the volume corner
    pa, pb = surface_points(a, spacing), surface_points(b, spacing)
    distances = np.concatenate([cdist(pa, pb).min(axis=1), cdist(pb, pa).min(axis=1)])
    assert hd95(a, b, spacing) == pytest.approx(np.percentile(distances, 95), abs=1e-9)


@pytest.mark.parametrize(
    "rule,both_empty_dice,both_empty_hd", [("brats", 1.0, 0.0), ("nan", math.nan, math.nan)]
)
def test_empty_rules(rule, both_empty_dice, both_empty_hd):
    empty, full = np.zeros((8, 8, 8), bool), cube((8, 8, 8), (2, 2, 2), 3)
    assert dice(empty, empty, rule) == pytest.approx(both_empty_dice, nan_ok=True)
    assert hd95(empty, empty, (1, 1, 1), rule) == pytest.approx(both_empty_hd, nan_ok=True)
    for pred, ref in ((empty, full), (full, empty)):
        assert dice(pred, ref, rule) == 0.0
        assert hd95(pred, ref, (1, 1, 1), rule) == HD95_EMPTY == 373.13
    with pytest.raises(ConfigError, match="evaluate.empty_rule"):
        dice(full, full, "zero")


def test_region_scores_unions_and_empty_et():
    ref = np.zeros((20, 20, 20), dtype=np.uint8)
    ref[5:15, 5:15, 5:15] = 2  # edema 1000 voxels
    ref[8:12, 8:12, 8:12] = 1  # core 64 voxels inside it
    pred = ref.copy()
    pred[5:15, 5:15, 5] = 0  # one 100-voxel layer of edema missed
    scores = region_scores(pred, ref, empty_rule="brats")
    assert set(scores) == {"WT", "TC", "ET"}
    assert scores["WT"]["dice"] == pytest.approx(2 * 900 / 1900)
    assert scores["TC"] == {"dice": 1.0, "hd95": 0.0}
    assert scores["ET"] == {"dice": 1.0, "hd95": 0.0}  # no ET anywhere: both empty
    nan_scores = region_scores(pred, ref, empty_rule="nan")
    assert math.isnan(nan_scores["ET"]["dice"]) and math.isnan(nan_scores["ET"]["hd95"])
    pred[9, 9, 9] = 3  # a false ET voxel: ET exactly-one-empty; TC gains it
    scores = region_scores(pred, ref)
    assert scores["ET"] == {"dice": 0.0, "hd95": HD95_EMPTY}
    assert scores["TC"]["dice"] == 1.0  # 3 is in TC and the voxel was core before
    with pytest.raises(DataError, match="labels must be in 0..3"):
        region_scores(pred, np.where(ref == 1, 4, ref).astype(np.uint8))


def test_summarise_skips_nan():
    patients = [
        {
            "WT": {"dice": 0.9, "hd95": 2.0},
            "TC": {"dice": 0.8, "hd95": 4.0},
            "ET": {"dice": math.nan, "hd95": math.nan},
        },
        {
            "WT": {"dice": 0.7, "hd95": 6.0},
            "TC": {"dice": 0.6, "hd95": 5.0},
            "ET": {"dice": 0.5, "hd95": 3.0},
        },
        {
            "WT": {"dice": 0.8, "hd95": 1.0},
            "TC": {"dice": 0.1, "hd95": 30.0},
            "ET": {"dice": 0.7, "hd95": 9.0},
        },
    ]
    summary = summarise(patients)
    assert summary["WT"] == pytest.approx(
        {"dice_mean": 0.8, "dice_median": 0.8, "hd95_mean": 3.0, "hd95_median": 2.0}
    )
    assert summary["TC"] == pytest.approx(
        {"dice_mean": 0.5, "dice_median": 0.6, "hd95_mean": 13.0, "hd95_median": 5.0}
    )
    assert summary["ET"] == pytest.approx(
        {"dice_mean": 0.6, "dice_median": 0.6, "hd95_mean": 6.0, "hd95_median": 6.0}
    )
    all_nan = summarise([patients[0]])
    assert math.isnan(all_nan["ET"]["dice_mean"]) and math.isnan(all_nan["ET"]["hd95_median"])
