"""Normalisation, fifth channel, crop/uncrop, slicing and slice selection.

All checked against plain numpy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from brats_seg.config import group_defaults
from brats_seg.data.crop import brain_bbox, centred_crop_box, uncrop
from brats_seg.data.discovery import CaseFiles
from brats_seg.data.nifti import LoadedCase
from brats_seg.data.preprocess import (
    flair_edges,
    normalize,
    preprocess_case,
    restore_prediction,
    slices_to_volume,
    volume_to_slices,
)
from brats_seg.data.selection import class_pixel_counts, select_slices
from brats_seg.data.settings import PreprocessSettings, SelectionSettings
from brats_seg.errors import ConfigError

from conftest import blob_case, preprocess_settings

_DEFAULT_PRE = group_defaults("data", "brats")["preprocess"]


def loaded_case(image: np.ndarray, seg: np.ndarray | None) -> LoadedCase:
    images = {m: Path(f"/nowhere/c_{m}.nii.gz") for m in ("t1", "t1ce", "t2", "flair")}
    case = CaseFiles("c", Path("/nowhere"), images, None, "brats2021")
    return LoadedCase(case, image.astype(np.float32), seg, "2017", np.eye(4), None, (1.0, 1.0, 1.0))


@pytest.fixture()
def volume():
    rng = np.random.default_rng(0)
    vol = rng.uniform(10, 500, size=(12, 10, 6)).astype(np.float32)
    vol[:3] = 0  # background rows
    vol[5, 5, 5] = 0
    return vol


def test_zscore_by_hand(volume):
    mask = volume != 0
    out = normalize(volume, mask, "zscore")
    vals = volume[mask].astype(np.float64)
    expected = (volume - vals.mean()) / np.sqrt(((vals - vals.mean()) ** 2).mean())
    np.testing.assert_allclose(out[mask], expected[mask], rtol=1e-5, atol=1e-5)
    assert (out[~mask] == 0).all() and out.dtype == np.float32
    assert abs(out[mask].mean()) < 1e-5 and abs(out[mask].std() - 1) < 1e-4


def test_minmax_by_hand(volume):
    mask = volume != 0
    out = normalize(volume, mask, "minmax")
    lo, hi = volume[mask].min(), volume[mask].max()
    np.testing.assert_allclose(out[mask], (volume[mask] - lo) / (hi - lo), rtol=1e-5, atol=1e-6)
    assert (out[~mask] == 0).all()
    assert out[mask].min() == 0 and abs(out[mask].max() - 1) < 1e-6


def test_percentile_by_hand(volume):
    mask = volume != 0
    out = normalize(volume, mask, "percentile", (10.0, 90.0))
    vals = np.sort(volume[mask].astype(np.float64))

    # numpy's default (linear) percentile: position p/100 * (n - 1) in the sorted values
    def pct(p):
        pos = p / 100 * (len(vals) - 1)
        i = int(np.floor(pos))
        return vals[i] + (pos - i) * (vals[min(i + 1, len(vals) - 1)] - vals[i])

    lo, hi = pct(10), pct(90)
    expected = (np.clip(volume[mask], lo, hi) - lo) / (hi - lo)
    np.testing.assert_allclose(out[mask], expected, rtol=1e-5, atol=1e-6)
    assert (out[~mask] == 0).all() and out.min() >= 0 and out.max() <= 1


def test_constant_and_empty_brains_give_zeros():
    vol = np.zeros((4, 4, 2), np.float32)
    assert (normalize(vol, vol != 0, "zscore") == 0).all()
    vol[1:3, 1:3] = 7
    for method in ("zscore", "minmax", "percentile"):
        assert (normalize(vol, vol != 0, method) == 0).all()


def test_flair_edges_are_per_slice_2d():
    image, _ = blob_case((24, 24, 6), seed=1)
    flair = image[..., 3]
    edges = flair_edges(flair, sigma=1.5)
    mask = flair != 0
    vals = flair[mask].astype(np.float64)
    zscored = np.where(mask, (flair - vals.mean()) / vals.std(), 0)
    for z in range(flair.shape[2]):
        expected = ndimage.gaussian_gradient_magnitude(zscored[:, :, z], sigma=1.5)
        np.testing.assert_allclose(edges[:, :, z], expected, rtol=1e-4, atol=1e-5)


def test_fifth_channel_uses_images_only_and_is_zero_outside_brain():
    image, classes = blob_case((32, 32, 8), seed=2)
    cfg = preprocess_settings(fifth_channel="flair_edges")
    with_labels = preprocess_case(loaded_case(image, classes), cfg)
    without = preprocess_case(loaded_case(image, np.zeros_like(classes)), cfg)
    assert with_labels.x.shape == (8, 32, 32, 5)
    np.testing.assert_array_equal(with_labels.x, without.x)
    outside = volume_to_slices(image[..., 3] == 0)
    assert (with_labels.x[..., 4][outside] == 0).all()
    assert np.abs(with_labels.x[..., 4][~outside]).max() > 0


def test_preprocess_case_slices_and_normalises_each_modality():
    image, classes = blob_case((32, 24, 8), seed=4)
    prep = preprocess_case(loaded_case(image, classes), preprocess_settings(normalization="minmax"))
    assert prep.x.shape == (8, 32, 24, 4) and prep.x.dtype == np.float32
    assert prep.crop_box is None and prep.full_shape == (32, 24, 8)
    for c in range(4):
        vol = image[..., c]
        expected = normalize(vol, vol != 0, "minmax")
        for z in (0, 3, 7):  # slice z of the model input is vol[:, :, z]
            np.testing.assert_array_equal(prep.x[z, :, :, c], expected[:, :, z])
    np.testing.assert_array_equal(prep.y[5], classes[:, :, 5])
    np.testing.assert_array_equal(prep.brain_pixels, (image != 0).any(-1).sum(axis=(0, 1)))


def test_crop_box_is_centred_on_brain_and_clamped():
    mask = np.zeros((100, 90, 5), bool)
    mask[30:61, 20:41, 2] = True  # bbox rows 30..60, cols 20..40 (centre 45.5, 30.5)
    mask[40, 25, 4] = True
    assert brain_bbox(mask) == (30, 61, 20, 41)
    x0, x1, y0, y1 = centred_crop_box(mask, (48, 32))
    assert (x1 - x0, y1 - y0) == (48, 32)
    assert abs((x0 + x1) / 2 - 45.5) <= 0.5 and abs((y0 + y1) / 2 - 30.5) <= 0.5
    # near the border the box is clamped inside the volume
    edge = np.zeros((100, 90, 5), bool)
    edge[0:10, 80:90, 0] = True
    assert centred_crop_box(edge, (48, 32)) == (0, 48, 58, 90)
    with pytest.raises(ConfigError, match=r"data.preprocess.crop.size \[112, 32\] is larger"):
        centred_crop_box(mask, (112, 32))


def _refusal(*overrides: str) -> str:
    """The one line that composing and checking ``train`` with ``overrides`` ends in."""
    from brats_seg.config import check_options, compose, one_line

    with pytest.raises(Exception) as err:  # noqa: PT011  (Hydra's or ours: both one line)
        check_options(compose("train", list(overrides)))
    return one_line(err.value)


@pytest.mark.parametrize("size", ["[100,160]", "[192]", "[0,16]", "192x160", "[16.0,32]"])
def test_crop_size_must_be_multiples_of_16(size):
    """Checked once, when the config is composed (the schema's domain), whether or not the crop
    is enabled."""
    assert "data.preprocess.crop.size" in _refusal(f"data.preprocess.crop.size={size}")
    crop = {"enabled": False, "size": [16, 16]}
    assert PreprocessSettings.from_cfg({**_DEFAULT_PRE, "crop": crop}, "axial").crop_size is None


def test_other_preprocess_options_are_validated():
    for override in [
        "data.preprocess.normalization=robust",
        "data.preprocess.percentiles=[90,10]",
        "data.preprocess.fifth_channel=edges",
        "data.preprocess.fifth_channel_sigma=0",
        "data.selection.rule=centre",
        "data.selection.threshold=-1",
    ]:
        assert override.split("=")[0] in _refusal(override), override


def test_crop_then_uncrop_round_trip():
    image, classes = blob_case((64, 48, 6), seed=5)
    prep = preprocess_case(loaded_case(image, classes), preprocess_settings(crop_size=(48, 32)))
    assert prep.x.shape == (6, 48, 32, 4)
    x0, x1, y0, y1 = prep.crop_box
    np.testing.assert_array_equal(prep.y, volume_to_slices(classes[x0:x1, y0:y1]))
    # every tumour voxel lies inside the brain and the brain fits the crop, so the round trip is
    # exact

    np.testing.assert_array_equal(
        restore_prediction(prep.y, prep.crop_box, prep.full_shape), classes
    )
    full = uncrop(prep.y, prep.crop_box, prep.full_shape, layout="slices")
    assert full.shape == (6, 64, 48)
    np.testing.assert_array_equal(slices_to_volume(full), classes)
    # outside the box the paste is zero
    vol = uncrop(np.ones((48, 32, 6), np.uint8), prep.crop_box, prep.full_shape)
    assert vol.sum() == 48 * 32 * 6 and vol[x0:x1, y0:y1].all()


def test_volume_smaller_than_crop_is_a_config_error():
    image, classes = blob_case((32, 32, 4), seed=0)
    with pytest.raises(ConfigError, match="data.preprocess.crop.size"):
        preprocess_case(loaded_case(image, classes), preprocess_settings(crop_size=(48, 32)))


def test_selection_rules_on_hand_made_seg():
    y = np.zeros((5, 10, 10), np.uint8)
    y[1, :3, :3] = 1  # 9 px of class 1
    y[2, :5, :5] = 2  # 25 px of class 2
    y[3, :4, :4] = 3  # 16 px of class 3 ...
    y[3, 5:, 5:] = 1  # ... and 25 px of class 1: 41 tumour px, no single class above 30
    brain = np.array([0, 50, 50, 50, 7])
    counts = class_pixel_counts(y)
    assert counts[3].tolist() == [59, 25, 0, 16]
    assert counts.sum(axis=1).tolist() == [100] * 5
    assert select_slices(y, brain, SelectionSettings("threshold", 20)).tolist() == [2, 3]
    assert select_slices(y, brain, SelectionSettings("threshold", 25)).tolist() == []
    assert select_slices(y, brain, SelectionSettings("threshold", 30)).tolist() == []
    assert select_slices(y, brain, SelectionSettings("threshold", 8)).tolist() == [1, 2, 3]
    assert select_slices(y, brain, SelectionSettings("tumour", 0)).tolist() == [1, 2, 3]
    assert select_slices(y, brain, SelectionSettings("brain", 0)).tolist() == [1, 2, 3, 4]


def test_the_settings_take_their_defaults_from_the_data_yaml_alone():
    """LabelRules, PreprocessSettings and the readers of a partial data node take what a caller
    leaves out from configs/data/brats.yaml (composed here), not from values of their own."""
    from dataclasses import MISSING, fields

    from brats_seg.config import complete_data_cfg, compose
    from brats_seg.data.labels import LabelRules

    data = compose("train", ["data=brats"]).data
    assert LabelRules.default() == LabelRules.from_cfg(data.labels)
    assert PreprocessSettings.default() == PreprocessSettings.from_data_cfg(data)
    restated = [
        f"{settings.__name__}.{f.name}"
        for settings in (LabelRules, PreprocessSettings, SelectionSettings)
        for f in fields(settings)
        if f.default is not MISSING and f.name != "option"  # option: where, for messages
    ]
    assert restated == []
    completed = complete_data_cfg({"root": "/r", "selection": {"rule": "tumour"}})
    assert completed["selection"] == {"rule": "tumour", "threshold": data.selection.threshold}
    assert completed["labels"] == {k: str(v) for k, v in data.labels.items()}
