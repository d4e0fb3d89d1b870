"""Lesion-wise metrics: the official package's convention against its stored values on real cases,
and the 2023 script's convention on cases worked out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from brats_seg.data.labels import REGIONS
from brats_seg.metrics.lesions import (
    HD95_2023_PENALTY,
    lesion_scores,
    lesionwise_2023,
    official_lesionwise,
    summarise_lesions,
)
from brats_seg.metrics.regions import hd95

from conftest import FIXTURES, lesion_perturbations

REFERENCE = FIXTURES / "lesion_reference.json"


def _cube(mask: np.ndarray, x: int, y: int, z: int, side: int) -> None:
    mask[x : x + side, y : y + side, z : z + side] = True


def _empty() -> np.ndarray:
    return np.zeros((48, 40, 40), dtype=bool)


# ---- official package (brats-evaluation, gli) against values it computed ----


def _reference_cases() -> list[tuple[str, str]]:
    values = json.loads(REFERENCE.read_text())["values"]
    return sorted(tuple(key.split("/")) for key in values)  # type: ignore[misc]


@pytest.mark.parametrize("case_id", sorted({case for case, _ in _reference_cases()}))
@pytest.mark.slow  # scores real 240x240x155 volumes
def test_official_convention_matches_the_package_on_perturbed_real_cases(real_data_root, case_id):
    from brats_seg.data.discovery import find_case
    from brats_seg.data.nifti import load_case

    record = json.loads(REFERENCE.read_text())
    assert record["package"].startswith("brats-evaluation") and record["config"] == "gli"
    loaded = load_case(find_case(real_data_root / case_id))
    predictions = lesion_perturbations(loaded.seg)
    expected_names = {name for case, name in _reference_cases() if case == case_id}
    assert set(predictions) == expected_names
    assert {"shifted", "eroded", "false_positive", "empty"} <= expected_names
    for name, pred in predictions.items():
        for region, labels in REGIONS.items():
            expected = record["values"][f"{case_id}/{name}"][region]
            got = official_lesionwise(
                np.isin(pred, labels), np.isin(loaded.seg, labels), loaded.spacing
            )
            where = f"{case_id} {name} {region}"
            assert (got["tp"], got["fp"], got["fn"]) == (
                expected["tp"],
                expected["fp"],
                expected["fn"],
            ), where
            assert got["dsc_mean"] == pytest.approx(expected["sq_dsc"], abs=1e-4, nan_ok=True), (
                where
            )
            if math.isinf(expected["sq_hd95"]):
                assert math.isinf(got["hd95_mean"]), where
            else:
                assert got["hd95_mean"] == pytest.approx(expected["sq_hd95"], abs=0.05), where


def test_reference_covers_a_missed_small_lesion():
    names = {name for _, name in _reference_cases()}
    assert "missed_small" in names
    values = json.loads(REFERENCE.read_text())["values"]
    assert any(v[r]["fn"] >= 1 for k, v in values.items() if k.endswith("/missed_small") for r in v)


def test_official_convention_edge_cases():
    ref, pred = _empty(), _empty()
    both_empty = official_lesionwise(pred, ref)
    assert math.isnan(both_empty["dsc_mean"]) and math.isnan(both_empty["hd95_mean"])
    assert (both_empty["tp"], both_empty["fp"], both_empty["fn"]) == (0, 0, 0)
    _cube(ref, 5, 5, 5, 4)
    _cube(pred, 30, 30, 30, 4)
    disjoint = official_lesionwise(pred, ref)
    assert disjoint["dsc_mean"] == 0.0 and math.isinf(disjoint["hd95_mean"])
    assert (disjoint["tp"], disjoint["fp"], disjoint["fn"]) == (0, 1, 1)


def test_official_matching_is_one_to_one():
    # one reference lesion overlapped by two predicted pieces: the better piece matches, the other
    # is an FP
    ref, pred = _empty(), _empty()
    ref[10:20, 10:20, 10:20] = True
    pred[10:18, 10:20, 10:20] = True
    pred[19:20, 10:20, 10:20] = True
    got = official_lesionwise(pred, ref)
    assert (got["tp"], got["fp"], got["fn"]) == (1, 1, 0)
    assert got["dsc_mean"] == pytest.approx(2 * 800 / (1000 + 800))


# ---- BraTS 2023 script, hand-worked ----


def test_2023_one_false_positive_lesion():
    ref, pred = _empty(), _empty()
    _cube(ref, 10, 10, 10, 4)  # 64 voxels > 50 mm^3: scored
    _cube(pred, 10, 10, 10, 4)  # found exactly: Dice 1, HD95 0
    _cube(pred, 30, 30, 30, 3)  # far from every reference lesion: a false positive
    got = lesionwise_2023(pred, ref)
    assert (got["tp"], got["fp"], got["fn"]) == (1, 1, 0)
    assert got["dice"] == pytest.approx((1.0 + 0.0) / (1 + 1))
    assert got["hd95"] == pytest.approx((0.0 + HD95_2023_PENALTY) / (1 + 1))


def test_2023_one_false_negative_lesion():
    ref, pred = _empty(), _empty()
    _cube(ref, 10, 10, 10, 4)
    _cube(ref, 30, 30, 30, 4)  # missed: Dice 0, HD95 374
    _cube(pred, 10, 10, 10, 4)
    got = lesionwise_2023(pred, ref)
    assert (got["tp"], got["fp"], got["fn"]) == (1, 0, 1)
    assert got["dice"] == pytest.approx(0.5)
    assert got["hd95"] == pytest.approx(HD95_2023_PENALTY / 2)


def test_2023_small_missed_lesion_is_dropped():
    ref, pred = _empty(), _empty()
    _cube(ref, 10, 10, 10, 4)
    _cube(ref, 30, 30, 30, 3)  # 27 voxels <= 50 mm^3: not scored, not a false negative
    _cube(pred, 10, 10, 10, 4)
    got = lesionwise_2023(pred, ref)
    assert (got["tp"], got["fp"], got["fn"]) == (1, 0, 0)
    assert got["dice"] == 1.0 and got["hd95"] == 0.0
    # the same small lesion counts when the voxels are larger (27 voxels of 2 mm^3 = 54 mm^3)
    assert lesionwise_2023(pred, ref, spacing=(2.0, 1.0, 1.0))["fn"] == 1


def test_2023_two_reference_lesions_merged_by_dilation():
    ref, pred = _empty(), _empty()
    _cube(ref, 10, 10, 10, 4)  # A: x 10..13
    _cube(ref, 16, 10, 10, 4)  # B: x 16..19, a 2-voxel gap that the 3-voxel dilation closes
    _cube(pred, 10, 10, 10, 4)  # only A predicted
    got = lesionwise_2023(pred, ref)
    # one merged lesion of 128 voxels against 64 predicted: Dice 2*64/(128+64)
    assert (got["tp"], got["fp"], got["fn"]) == (1, 0, 0)
    assert got["dice"] == pytest.approx(2 / 3)
    # surface voxels: A's 56 at distance 0 both ways; B's 56 at x-13 from A's face x=13 (16 at 3, 12
    # at 4, 12 at 5, 16 at 6); the larger directed 95th percentile, reference to prediction, of 112
    # distances (position 105.45) is 6
    assert got["hd95"] == pytest.approx(6.0)
    # the official convention keeps them apart: A matched, B missed
    official = official_lesionwise(pred, ref)
    assert (official["tp"], official["fp"], official["fn"]) == (1, 0, 1)
    assert official["dsc_mean"] == 1.0 and official["hd95_mean"] == 0.0


def _brute_force_directed_hd95(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """The two directed 95th percentiles at 1 mm by enumeration: surface voxels by checking their
    six neighbours, every pair's Euclidean distance, no distance transform."""

    def surface(mask):
        padded = np.pad(mask, 1)
        points = []
        for x, y, z in np.argwhere(mask):
            x, y, z = x + 1, y + 1, z + 1
            neighbours = (
                padded[x - 1, y, z],
                padded[x + 1, y, z],
                padded[x, y - 1, z],
                padded[x, y + 1, z],
                padded[x, y, z - 1],
                padded[x, y, z + 1],
            )
            if not all(neighbours):
                points.append((x, y, z))
        return np.array(points, dtype=np.float64)

    p, r = surface(pred), surface(ref)
    pairwise = np.sqrt(((p[:, None, :] - r[None, :, :]) ** 2).sum(-1))
    return float(np.percentile(pairwise.min(1), 95)), float(np.percentile(pairwise.min(0), 95))


def test_2023_lesion_hd95_is_the_scripts_area_weighted_directed_percentile():
    """A lesion found whole, plus a one-voxel tail of 30 voxels: the 2023 script's HD95
    (surface_distance's compute_robust_hausdorff at 95, surface elements weighted by area) is the
    larger of the two directed percentiles, 18.0 mm (the thin tail's many faces carry more than 5%
    of the prediction's surface area); the pooled voxel percentile is 0 and the directed voxel
    percentile 4.2. The values are the script's method's, measured with surface-distance 0.1."""
    ref = np.zeros((60, 30, 30), dtype=bool)
    ref[5:15, 10:20, 10:20] = True
    pred = ref.copy()
    pred[15:45, 14, 14] = True
    got = lesionwise_2023(pred, ref)
    assert (got["tp"], got["fp"], got["fn"]) == (1, 0, 0)
    assert got["dice"] == pytest.approx(2 * 1000 / (1000 + 1030))
    assert got["hd95"] == pytest.approx(18.0)
    assert max(_brute_force_directed_hd95(pred, ref)) == pytest.approx(4.2)
    assert hd95(pred, ref) == 0.0
    # an irregular lesion and prediction
    grid = np.indices((26, 26, 26))
    ball = ((grid - np.array([12, 12, 12])[:, None, None, None]) ** 2).sum(0)
    ref = (ball <= 36) | ((grid[0] >= 12) & (grid[0] < 20) & (grid[1] >= 10) & (grid[2] < 16))
    shifted = ((grid - np.array([13, 11, 12])[:, None, None, None]) ** 2).sum(0)
    pred = shifted <= 25
    pred[1:8, 12, 12] = True
    got = lesionwise_2023(pred, ref)
    assert (got["tp"], got["fp"], got["fn"]) == (1, 0, 0)
    assert got["hd95"] == pytest.approx(11.7047, abs=1e-3)
    assert max(_brute_force_directed_hd95(pred, ref)) == pytest.approx(12.05, abs=0.01)


@pytest.mark.parametrize("seed", range(6))
def test_2023_hd95_equals_the_surface_distance_package_on_scattered_masks(seed):
    """Our sort of the surface elements against the package's own compute_surface_distances (its
    Python-loop sort) on random blobby masks with ties, anisotropic spacing and masks touching the
    array's edge: the same value, exactly."""
    from scipy import ndimage
    from surface_distance import compute_robust_hausdorff, compute_surface_distances

    from brats_seg.metrics.lesions import _pair_hd95_2023

    rng = np.random.default_rng(seed)
    shape = (30, 26, 22)
    ref = ndimage.binary_dilation(rng.random(shape) > 0.995, iterations=2)
    pred = ndimage.binary_dilation(rng.random(shape) > 0.993, iterations=1 + seed % 2)
    if seed % 3 == 0:
        pred[0, :, :] = True  # against the array's edge
    spacing = (1.0, 1.0, 1.0) if seed % 2 else (1.0, 0.9, 2.5)
    expected = compute_robust_hausdorff(compute_surface_distances(ref, pred, spacing), 95)
    assert _pair_hd95_2023(pred, ref, spacing) == expected


def test_2023_nothing_on_either_side_scores_perfect():
    got = lesionwise_2023(_empty(), _empty())
    assert got == {"dice": 1.0, "hd95": 0.0, "tp": 0, "fp": 0, "fn": 0}


# ---- per patient and summary ----


def test_lesion_scores_per_region_and_summary():
    ref = np.zeros((40, 40, 30), dtype=np.uint8)
    ref[10:20, 10:20, 10:20] = 2
    ref[12:18, 12:18, 12:18] = 3
    pred = np.zeros_like(ref)  # nothing predicted
    scores = lesion_scores(pred, ref)
    assert set(scores) == {"brats2024", "brats2023"}
    assert set(scores["brats2024"]) == set(REGIONS)
    # lesions but none matched: infinite, as the package reports it per subject
    assert math.isinf(scores["brats2024"]["WT"]["hd95_mean"])
    assert scores["brats2023"]["ET"] == {
        "dice": 0.0,
        "hd95": HD95_2023_PENALTY,
        "tp": 0,
        "fp": 0,
        "fn": 1,
    }
    perfect = lesion_scores(ref, ref)
    summary = summarise_lesions([{"lesionwise": scores}, {"lesionwise": perfect}])
    assert summary["brats2024"]["WT"]["dsc_mean"] == pytest.approx(0.5)
    assert summary["brats2023"]["WT"]["dice_mean"] == pytest.approx(0.5)
    assert summary["brats2023"]["ET"]["fn"] == 1 and summary["brats2023"]["ET"]["tp"] == 1


def test_official_infinite_hd95_stays_infinite_in_the_mean_over_patients(tmp_path):
    """The package's parser keeps a subject's infinite lesion-wise HD95 (it puts 373 only for the
    global HD95 and missing subjects) and its mean over subjects is then infinite; metrics.json
    writes it null, and the summary of what was read back is the same."""
    from brats_seg.atomic import write_json

    ref = np.zeros((40, 40, 30), dtype=np.uint8)
    ref[10:20, 10:20, 10:20] = 2
    missed = {"lesionwise": lesion_scores(np.zeros_like(ref), ref)}
    found = {"lesionwise": lesion_scores(ref, ref)}
    nothing = {"lesionwise": lesion_scores(np.zeros_like(ref), np.zeros_like(ref))}
    summary = summarise_lesions([missed, found, nothing])["brats2024"]
    assert math.isinf(summary["WT"]["hd95_mean"]) and summary["WT"]["hd95_infinite"] == 1
    assert summary["ET"]["hd95_infinite"] == 0 and math.isnan(summary["ET"]["hd95_mean"])
    assert summary["WT"]["dsc_mean"] == pytest.approx(0.5)
    write_json(tmp_path / "m.json", [missed, found, nothing])
    stored = json.loads((tmp_path / "m.json").read_text())
    assert stored[0]["lesionwise"]["brats2024"]["WT"]["hd95_mean"] is None
    again = summarise_lesions(stored)["brats2024"]
    assert math.isinf(again["WT"]["hd95_mean"]) and again["WT"]["hd95_infinite"] == 1
    assert again["TC"]["hd95_infinite"] == 0  # no lesion on either side: NaN, not infinite
