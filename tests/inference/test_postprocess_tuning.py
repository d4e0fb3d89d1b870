"""Per-region post-processing and its tuning for lesion-wise Dice (inference/postprocess.py,
inference/postprocess_tuning.py)."""

from __future__ import annotations

import numpy as np
import pytest

from brats_seg.errors import ConfigError
from brats_seg.inference.postprocess import (
    PostprocessSettings,
    classes_from_probabilities,
    postprocess,
)
from brats_seg.inference.postprocess_tuning import TuningCase, tune
from brats_seg.metrics.lesions import lesion_dice_2023_by_min_size, lesionwise_2023

SHAPE = (48, 48, 40)
CENTRE = (20, 24, 20)
# Specks of 2x2x2 = 8 voxels, far from the lesion.
SPECKS = ((3, 3, 3), (40, 40, 3), (40, 5, 33), (5, 42, 34))


def _ball(radius: float, centre=CENTRE) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, n) for n in SHAPE)]
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


def _speck_mask() -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    for x, y, z in SPECKS:
        mask[x : x + 2, y : y + 2, z : z + 2] = True
    return mask


def _truth() -> np.ndarray:
    """A lesion: edema (radius 7) around a necrotic core (radius 4) with an enhancing shell."""
    truth = np.zeros(SHAPE, dtype=np.uint8)
    truth[_ball(7)] = 2
    truth[_ball(4)] = 3
    truth[_ball(2.5)] = 1
    return truth


def _softmax_of(classes: np.ndarray, confidence: float = 0.9) -> np.ndarray:
    probs = np.full(SHAPE + (4,), (1 - confidence) / 3, dtype=np.float32)
    np.put_along_axis(probs, classes[..., None].astype(np.int64), confidence, axis=-1)
    return probs


def _predicted_case() -> TuningCase:
    """The truth's lesion, predicted with its outer edema shell unsure (WT probability 0.45: the
    argmax says background) and with four confident specks of false edema."""
    truth = _truth()
    predicted = truth.copy()
    predicted[_speck_mask()] = 2
    probs = _softmax_of(predicted)
    rim = _ball(7) & ~_ball(6)
    probs[rim] = (0.55, 0.0, 0.45, 0.0)
    return TuningCase("case", probs, truth, (1.0, 1.0, 1.0))


def test_a_threshold_outside_0_1_is_refused_when_the_config_is_checked():
    from brats_seg.config import check_options, compose

    for override, message in (
        ("postprocess.tc_threshold=1.0", "postprocess.tc_threshold=1: must be"),
        ("postprocess.et_min_component=-1", "postprocess.et_min_component=-1: must be >= 0"),
    ):
        with pytest.raises(ConfigError) as err:
            check_options(compose("predict", ["run=r", "input=i", override]))
        assert message in str(err.value)


def test_small_components_of_each_region_are_relabelled_to_the_next_region_out():
    truth = _truth()
    classes = truth.copy()
    classes[3:5, 3:5, 3:5] = 3  # an isolated ET speck (8 voxels) with nothing around it
    classes[40:43, 40:43, 3:6] = 2  # an edema blob (27 voxels) ...
    classes[41, 41, 4] = 1  # ... holding one NCR voxel
    et_only = postprocess(classes, PostprocessSettings(et_min_component=10))
    assert np.all(et_only[3:5, 3:5, 3:5] == 1)  # ET -> NCR
    np.testing.assert_array_equal(et_only[_ball(7)], truth[_ball(7)])  # the lesion's ET stays
    tc = postprocess(classes, PostprocessSettings(tc_min_component=10))
    assert np.all(tc[3:5, 3:5, 3:5] == 2) and tc[41, 41, 4] == 2  # TC -> ED, still tumour
    np.testing.assert_array_equal(tc[_ball(7)], truth[_ball(7)])
    wt = postprocess(classes, PostprocessSettings(min_component=30))
    np.testing.assert_array_equal(wt, truth)  # both specks -> background
    # a region's steps commute: ET then TC then WT equals WT alone here
    every = PostprocessSettings(min_component=30, tc_min_component=10, et_min_component=10)
    np.testing.assert_array_equal(postprocess(classes, every), truth)


def test_region_thresholds_keep_the_regions_nested_and_zero_is_the_argmax():
    case = _predicted_case()
    argmax = np.argmax(case.probs, axis=-1)
    np.testing.assert_array_equal(
        classes_from_probabilities(case.probs, PostprocessSettings()), argmax
    )
    wider = classes_from_probabilities(case.probs, PostprocessSettings(wt_threshold=0.4))
    assert np.all(wider[_ball(7)] > 0)  # the unsure rim is tumour at 0.4
    assert np.all(wider[~_ball(7) & ~_speck_mask()] == 0)
    # an ET threshold below the argmax's ET cannot put ET outside the tumour core it lies in
    probs = case.probs.copy()
    probs[..., 3] = np.where(_ball(7) & ~_ball(4), 0.35, probs[..., 3])
    probs[_ball(7) & ~_ball(4), 2] = 0.6
    loose_et = classes_from_probabilities(probs, PostprocessSettings(et_threshold=0.3))
    assert not np.any(loose_et[_ball(7) & ~_ball(4)] == 3)


def test_dice_by_min_size_equals_the_2023_score_of_each_filtered_prediction():
    from brats_seg.metrics.lesions import connected_lesions

    truth = _truth()
    ref = truth > 0
    ref[30:34, 30:34, 30:34] = True  # a second reference lesion (64 voxels) ...
    ref[2:4, 20:22, 20:21] = True  # ... and one the 2023 script drops (4 voxels <= 50 mm^3)
    pred = np.roll(_ball(6.5), 1, axis=0) | _speck_mask()
    pred[31:33, 31:33, 31:34] = True  # finds the second lesion in part
    pred[2:3, 20:21, 21:23] = True  # touches the dropped one: not a false positive
    sizes = (0, 1, 5, 9, 13, 40, 5000)
    by_size = lesion_dice_2023_by_min_size(pred, ref, sizes, (1.0, 1.2, 0.9))
    labels, _ = connected_lesions(pred)
    counts = np.bincount(labels.ravel())
    for min_size, dice in zip(sizes, by_size, strict=True):
        kept = pred & (counts[labels] >= min_size)
        expected = lesionwise_2023(kept, ref, (1.0, 1.2, 0.9))["dice"]
        assert dice == pytest.approx(expected, abs=1e-12), min_size


def test_the_tuner_removes_the_specks_keeps_the_lesion_and_raises_lesionwise_dice():
    case = _predicted_case()
    record = tune([case])
    wt = record["regions"]["WT"]
    # 10 voxels is the least aggressive size that drops the 8-voxel specks (the lesion has ~1400)
    assert wt["chosen"]["min_size"] == 10
    # the unsure rim counts once the threshold is below 0.45; 0.4 is nearest 0.5 of those that do
    assert wt["chosen"]["threshold"] == 0.4
    assert wt["chosen"]["score"] > wt["without"] + 0.5  # 4 false positives cost 4/5 of the Dice
    assert len(wt["grid"]) == 6 * 8 and record["cases"] == ["case"]
    settings = PostprocessSettings.from_cfg(record["settings"])
    assert settings.min_component == 10 and settings.wt_threshold == 0.4
    # TC and ET were predicted as they are: nothing to gain, so nothing is done
    assert (settings.tc_min_component, settings.tc_threshold) == (0, 0.0)
    assert (settings.et_min_component, settings.et_threshold) == (0, 0.0)
    final = postprocess(classes_from_probabilities(case.probs, settings), settings)
    np.testing.assert_array_equal(final, case.truth)  # the specks are gone, the lesion whole
    before = lesionwise_2023(np.argmax(case.probs, -1) > 0, case.truth > 0)["dice"]
    after = lesionwise_2023(final > 0, case.truth > 0)["dice"]
    assert before < 0.25 and after == 1.0


def test_ties_go_to_the_least_aggressive_setting():
    truth = _truth()
    record = tune([TuningCase("perfect", _softmax_of(truth), truth, (1.0, 1.0, 1.0))])
    assert record["settings"] == PostprocessSettings().as_dict()
    assert all(r["chosen"]["score"] == 1.0 for r in record["regions"].values())
