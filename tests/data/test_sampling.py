"""Whole-volume sampling in tf.data: random patches, a foreground-centred share, appearance
augmentation, 2.5D input and the recipe that puts them together."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from brats_seg.data import cache
from brats_seg.data.dataset import PreparedData
from brats_seg.data.preprocess import add_context
from brats_seg.data.sampling import SamplingSettings
from brats_seg.data.settings import PreprocessSettings, SelectionSettings
from brats_seg.errors import ConfigError

from conftest import augment_cfg, preprocess_settings

tf = pytest.importorskip("tensorflow")

from brats_seg.data.pipeline import make_dataset  # noqa: E402  (TensorFlow first)


def cached_slices(
    path: Path,
    slices: int = 12,
    size: int = 48,
    channels: int = 4,
    preprocess: PreprocessSettings | None = None,
    background_rows: int = 0,
) -> PreparedData:
    """A cache written directly: every pixel is brain, channel 0 holds its row + 1 and channel 1 its
    column + 1 (so a window tells where it was cut from; channel c repeats channel c % 4), tumour (a
    4x4 block of ET) is only on even slices."""
    y = np.zeros((slices, size, size), np.uint8)
    rng = np.random.default_rng(0)
    for k in range(0, slices, 2):
        r, c = rng.integers(0, size - 4, 2)
        y[k, r : r + 4, c : c + 4] = 3
    base = np.ones((slices, size, size, 4), np.float32)
    base[..., 0] += np.arange(size, dtype=np.float32)[None, :, None]
    base[..., 1] += np.arange(size, dtype=np.float32)[None, None, :]
    base[:, :background_rows] = 0.0
    x = base[..., [c % 4 for c in range(channels)]]
    meta = {
        "case_id": "S_1",
        "convention": "brats2021",
        "fingerprint": "s",
        "slice_shape": [size, size, channels],
        "selected": list(range(slices)),
        "class_counts": np.bincount(y.ravel(), minlength=4).tolist(),
    }
    cache.write_case_entry(path, meta, x, y)
    settings = preprocess or preprocess_settings()
    cache.write_index(
        path,
        {
            "name": "s",
            "root": str(path),
            "preprocess": settings.as_dict(),
            "selection": SelectionSettings("brain", 0).as_dict(),
            "cases": {"S_1": meta},
        },
    )
    return PreparedData.open(path)


def epoch(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds], strict=True)
    return np.concatenate(xs), np.concatenate(ys).argmax(-1)


def test_patches_are_windows_of_the_cached_slices(tmp_path):
    data = cached_slices(tmp_path / "c")
    ds = make_dataset(
        data, ["S_1"], 5, shuffle=True, seed=0, sampling=SamplingSettings(None, (16, 32))
    )
    assert ds.element_spec[0].shape.as_list() == [None, 16, 32, 4]
    x, y = epoch(ds)
    assert len(x) == 12  # without a foreground share: every slice once per epoch
    full_x, full_y = data.read_slices("S_1")
    slices = {tuple(np.asarray(full_y[k]).ravel()): k for k in range(len(full_y))}
    corners = set()
    for patch, labels in zip(x, y, strict=True):
        r0, c0 = int(patch[0, 0, 0]) - 1, int(patch[0, 0, 1]) - 1
        np.testing.assert_array_equal(
            patch, np.asarray(full_x[0, r0 : r0 + 16, c0 : c0 + 32], np.float32)
        )
        assert labels.shape == (16, 32)
        assert any(
            np.array_equal(labels, np.asarray(full_y[k])[r0 : r0 + 16, c0 : c0 + 32])
            for k in slices.values()
        )
        corners.add((r0, c0))
    assert len(corners) > 3  # random positions


def test_the_foreground_share_centres_patches_on_tumour(tmp_path):
    data = cached_slices(tmp_path / "c")

    def tumour_share(share):
        x, y = epoch(
            make_dataset(
                data, ["S_1"], 6, shuffle=True, seed=1, sampling=SamplingSettings(share, (16, 16))
            )
        )
        assert len(x) == 12  # an epoch draws as many samples as there are cached slices
        return np.mean([(labels > 0).any() for labels in y])

    assert tumour_share(1.0) == 1.0
    assert (
        tumour_share(0.0) < 0.5
    )  # 4x4 tumours on half of the 48x48 slices rarely fall in a random window
    # reproducible for a seed, different for another
    a = epoch(
        make_dataset(
            data, ["S_1"], 6, shuffle=True, seed=1, sampling=SamplingSettings(0.3, (16, 16))
        )
    )[0]
    b = epoch(
        make_dataset(
            data, ["S_1"], 6, shuffle=True, seed=1, sampling=SamplingSettings(0.3, (16, 16))
        )
    )[0]
    c = epoch(
        make_dataset(
            data, ["S_1"], 6, shuffle=True, seed=2, sampling=SamplingSettings(0.3, (16, 16))
        )
    )[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_centred_patches_hold_tumour_after_the_spatial_augmentation(tmp_path):
    """The position of a tumour-centred patch is picked on the flipped slice it is cut from, so
    every centred patch holds tumour (a left-right flip keeps the whole tumour in the slice). Picked
    on the labels before the flip, about half the flipped patches missed it."""
    data = cached_slices(tmp_path / "c", slices=24)
    flip = augment_cfg(enabled=True, flip=True, rotation_deg=0.0, scale=0.0, intensity=0.0)
    shares = []
    for seed in (1, 2, 3):
        _, y = epoch(
            make_dataset(
                data,
                ["S_1"],
                8,
                shuffle=True,
                seed=seed,
                augment_cfg=flip,
                sampling=SamplingSettings(1.0, (16, 16)),
            )
        )
        shares.append(np.mean([(labels > 0).any() for labels in y]))
    assert shares == [1.0, 1.0, 1.0]
    # with rotation and scaling too, a centred patch holds tumour whenever the slice still does
    strong = {**flip, "rotation_deg": 30.0, "scale": 0.2}
    _, y = epoch(
        make_dataset(
            data,
            ["S_1"],
            8,
            shuffle=True,
            seed=4,
            augment_cfg=strong,
            sampling=SamplingSettings(1.0, (16, 16)),
        )
    )
    assert np.mean([(labels > 0).any() for labels in y]) >= 0.9


def test_place_windows_centres_on_a_pixel_of_a_present_class():
    from brats_seg.data.sampling import place_windows

    y = np.zeros((5, 40, 40), np.uint8)
    y[0, 30, 35] = 1  # one pixel of one class: the window is centred on it, clipped to the slice
    y[1, 5:7, 5:7] = 3
    y[3, 10, 10], y[3, 20, 20] = 1, 3  # two classes: the class draw picks the second
    y[4] = y[3]
    draws = np.array(
        [
            [1, 0.5, 0.5, 0.99, 0.99],
            [1, 0.0, 0.0, 0.0, 0.0],
            [1, 0.99, 0.0, 0.5, 0.5],
            [1, 0.0, 0.0, 0.6, 0.0],
            [0, 0.5, 0.25, 0.6, 0.0],
        ],
        np.float32,
    )
    corners = place_windows(tf.constant(y), tf.constant(draws), (10, 12), 4).numpy()
    assert corners[0].tolist() == [25, 28]  # centre (30, 35) - (5, 6), column clipped to 40 - 12
    assert corners[1].tolist() == [0, 0]  # centre (5, 5) - (5, 6) clipped at 0
    assert corners[2].tolist() == [30, 0]  # no tumour: the random window, floor(0.99 * 31)
    assert corners[3].tolist() == [15, 14]  # class 3 at (20, 20)
    assert corners[4].tolist() == [15, 7]  # not centred: floor(0.5 * 31), floor(0.25 * 29)


def test_sampling_options_are_checked(tmp_path):
    """Read from the composed data node; a bad value is refused when the config is composed."""
    from brats_seg.config import check_options, compose, one_line

    assert SamplingSettings.from_data_cfg(
        {"sampling": {"foreground": 0.33}, "patch": {"size": [64, 96]}}
    ) == SamplingSettings(0.33, (64, 96))
    for override, message in (
        ("data.sampling.foreground=1.5", "data.sampling.foreground=1.5: must be >= 0 and <= 1"),
        ("data.patch.size=[64]", "data.patch.size=[64]: must be a list of 2 numbers"),
        ("data.patch.size=[64,0]", "data.patch.size=[64,0]"),
        ("data.augment.lesion_contrast=1.5", "data.augment.lesion_contrast=1.5: must be >= 0"),
        ("data.augment.lesion_region=core", "expected one of [tumour, edema]"),
    ):
        with pytest.raises(Exception) as err:  # noqa: PT011  (Hydra's or ours: both one line)
            check_options(compose("train", [override]))
        assert message in one_line(err.value), override
    data = cached_slices(tmp_path / "c", size=32)
    with pytest.raises(
        ConfigError, match=r"data.patch.size \[48, 16\] is larger than the cached slices \(32x32\)"
    ):
        make_dataset(
            data, ["S_1"], 4, shuffle=True, seed=0, sampling=SamplingSettings(None, (48, 16))
        )


def test_appearance_augmentation_changes_the_brain_only(tmp_path):
    data = cached_slices(tmp_path / "c", size=32, background_rows=6)
    plain = epoch(make_dataset(data, ["S_1"], 4, shuffle=False, seed=0))
    cfg = augment_cfg(enabled=True, flip=False, rotation_deg=0.0, scale=0.0, intensity=0.0)
    for extra in ({"gamma": 0.5}, {"blur": 1.5}, {"noise": 0.2}, {"intensity": 0.3}):
        aug = epoch(
            make_dataset(data, ["S_1"], 4, shuffle=False, seed=0, augment_cfg={**cfg, **extra})
        )
        np.testing.assert_array_equal(aug[1], plain[1])  # labels untouched
        assert np.all(aug[0][:, :6] == 0.0), extra  # background stays 0
        assert not np.allclose(aug[0][:, 6:], plain[0][:, 6:], atol=1e-3), extra
        assert np.all(np.isfinite(aug[0]))


def test_lesion_contrast_fades_the_tumour_towards_the_healthy_brain():
    """Factor 1 keeps the slice; factor f scales the tumour's difference from the healthy mean by f
    at its centre, leaves healthy brain far from it and the background alone, and per channel."""
    from brats_seg.data.augment import _lesion_contrast

    x = np.zeros((1, 40, 40, 2), np.float32)
    x[0, 4:36, 4:36] = [1.0, 2.0]  # healthy brain
    x[0, 14:26, 14:26] = [3.0, 5.0]  # tumour
    y = np.zeros((1, 40, 40), np.uint8)
    y[0, 14:26, 14:26] = 2
    brain = tf.not_equal(x, 0.0)
    same = _lesion_contrast(x, y, brain, tf.constant([[1.0, 1.0]])).numpy()
    np.testing.assert_allclose(same, x, atol=1e-6)
    faded = _lesion_contrast(x, y, brain, tf.constant([[0.5, 0.25]])).numpy()
    np.testing.assert_allclose(faded[0, 20, 20], [1.0 + 0.5 * 2.0, 2.0 + 0.25 * 3.0], atol=0.02)
    np.testing.assert_allclose(faded[0, 6, 6], [1.0, 2.0], atol=1e-6)  # healthy, far away
    edge = faded[0, 14, 20, 0]  # the outline is soft: between the centre's value and the tumour's
    assert 2.0 < edge < 3.0
    # the edema alone: an ET core inside it keeps its contrast
    core = y.copy()
    core[0, 18:22, 18:22] = 3
    edema = _lesion_contrast(x, core, brain, tf.constant([[0.5, 0.25]]), 2).numpy()
    np.testing.assert_allclose(edema[0, 18:22, 18:22], x[0, 18:22, 18:22], atol=1e-6)
    np.testing.assert_allclose(edema[0, 15, 15], faded[0, 15, 15], atol=0.05)
    # no tumour in a slice: nothing changes
    clean = _lesion_contrast(x, np.zeros_like(y), brain, tf.constant([[0.5, 0.5]])).numpy()
    np.testing.assert_allclose(clean, x, atol=1e-6)


def test_lesion_contrast_in_the_pipeline_touches_tumour_slices_only(tmp_path):
    data = cached_slices(tmp_path / "c", size=32, background_rows=6)
    plain = epoch(make_dataset(data, ["S_1"], 4, shuffle=False, seed=0))
    cfg = augment_cfg(enabled=True, flip=False, rotation_deg=0.0, scale=0.0, intensity=0.0)
    aug = epoch(
        make_dataset(
            data, ["S_1"], 4, shuffle=False, seed=0, augment_cfg={**cfg, "lesion_contrast": 0.9}
        )
    )
    np.testing.assert_array_equal(aug[1], plain[1])
    has_tumour = plain[1].reshape(len(plain[1]), -1).max(axis=1) > 0
    changed = ~np.isclose(aug[0], plain[0], atol=1e-4).reshape(len(plain[0]), -1).all(axis=1)
    np.testing.assert_array_equal(changed, has_tumour)
    assert np.all(aug[0][:, :6] == 0.0)


def test_appearance_keeps_a_channels_zero_valued_brain_voxels_in_the_brain():
    """Under minmax or percentile normalisation a channel's darkest brain voxel is exactly 0; it is
    brain (another channel is non-zero there) and gets the shift like its neighbours."""
    from brats_seg.data.augment import AugmentSettings, appearance, param_count

    x = np.zeros((1, 8, 8, 4), np.float32)
    x[0, 2:6, 2:6] = [1.0, 2.0, 2.0, 2.0]
    x[0, 3, 3, 0] = 0.0  # the darkest brain voxel of channel 0
    settings = AugmentSettings.from_cfg(
        augment_cfg(enabled=True, flip=False, rotation_deg=0.0, scale=0.0, intensity=0.3)
    )
    u = np.full((1, param_count(4, settings)), 0.5, np.float32)
    u[0, 7:11] = 1.0  # shift + 0.3 on every channel, gain 1
    out = appearance(tf.constant(x), tf.constant(u), settings, 4).numpy()
    assert out[0, 3, 3, 0] == pytest.approx(0.3)
    assert out[0, 2, 2, 0] == pytest.approx(1.3)
    assert np.all(out[0, :2] == 0.0) and np.all(out[0, 6:] == 0.0)  # background stays 0


def test_lesion_contrast_with_context_fades_the_slices_own_channels_only(tmp_path):
    """2.5D input: the labels are the slice's; its neighbours' channels (whose lesions lie
    elsewhere) are left as they are."""
    settings = preprocess_settings(context_slices=1)
    data = cached_slices(tmp_path / "c", size=32, channels=12, preprocess=settings)
    cfg = augment_cfg(enabled=True, flip=False, rotation_deg=0.0, scale=0.0, intensity=0.0)
    plain = epoch(make_dataset(data, ["S_1"], 4, shuffle=False, seed=0))
    aug = epoch(
        make_dataset(
            data, ["S_1"], 4, shuffle=False, seed=0, augment_cfg={**cfg, "lesion_contrast": 0.9}
        )
    )
    np.testing.assert_allclose(aug[0][..., 4:], plain[0][..., 4:], atol=1e-6)
    has_tumour = plain[1].reshape(len(plain[1]), -1).max(axis=1) > 0
    own = ~np.isclose(aug[0][..., :4], plain[0][..., :4], atol=1e-4)
    np.testing.assert_array_equal(own.reshape(len(own), -1).any(axis=1), has_tumour)


def test_context_slices_get_their_modalitys_gain(tmp_path):
    """2.5D input: a modality's neighbouring-slice copies are scaled like the slice's own
    channel."""
    settings = preprocess_settings(context_slices=1)
    data = cached_slices(tmp_path / "c", size=32, channels=12, preprocess=settings)
    cfg = augment_cfg(enabled=True, flip=False, rotation_deg=0.0, scale=0.0, intensity=0.3)
    plain = epoch(make_dataset(data, ["S_1"], 4, shuffle=False, seed=0))[0]
    aug = epoch(make_dataset(data, ["S_1"], 4, shuffle=False, seed=0, augment_cfg=cfg))[0]
    for c in range(4):
        np.testing.assert_allclose(
            aug[..., c + 4], aug[..., c], atol=1e-5
        )  # equal input, equal jitter
        np.testing.assert_allclose(aug[..., c + 8], aug[..., c], atol=1e-5)
    assert not np.allclose(aug, plain)


def test_add_context_stacks_neighbours_after_the_slice_itself():
    x = (
        np.arange(5, dtype=np.float32)[:, None, None, None] * np.ones((5, 2, 2, 3), np.float32)
        + 1.0
    )
    out = add_context(x, 2)
    assert out.shape == (5, 2, 2, 15)
    z = out[:, 0, 0]
    np.testing.assert_array_equal(z[:, 0:3], x[:, 0, 0])  # the slice's own channels first
    np.testing.assert_array_equal(z[:, 3], [0, 0, 1, 2, 3])  # z-2 (zeros beyond the volume)
    np.testing.assert_array_equal(z[:, 6], [0, 1, 2, 3, 4])  # z-1
    np.testing.assert_array_equal(z[:, 9], [2, 3, 4, 5, 0])  # z+1
    np.testing.assert_array_equal(z[:, 12], [3, 4, 5, 0, 0])  # z+2
    assert preprocess_settings(context_slices=2).channels == 20
    assert "context_slices" not in preprocess_settings().as_dict()  # plain 2D caches keep theirs


def test_the_recipe_composes_outside_the_studys_experiments():
    from brats_seg.config import compose

    cfg = compose("train", ["recipe=real_cpu", "data.root=/data/BraTS"])
    assert (
        cfg.data.name == "brats"
        and cfg.data.patch.size == [128, 128]
        and cfg.data.selection.rule == "brain"
    )
    assert cfg.data.preprocess.crop.size == [160, 192] and cfg.model.batch_norm is True
    assert cfg.experiment_id is None and cfg.study is None
    folds = compose(
        "train", ["recipe=real_cpu", "data.root=/x", "data.split.folds=4", "data.split.fold=3"]
    )
    assert folds.data.split.folds == 4 and folds.data.split.fold == 3
    assert compose("train", []).data.patch.size is None  # the default demo keeps today's behaviour
