"""Inference beyond one plain pass: fully convolutional models on other slice sizes, the brain box,
flip TTA and BraTS post-processing (real Keras models, real arrays)."""

from __future__ import annotations

import numpy as np
import pytest

from brats_seg.errors import ConfigError
from brats_seg.inference.postprocess import PostprocessSettings, postprocess

keras = pytest.importorskip("keras")

from brats_seg.inference.slices import (  # noqa: E402  (Keras first)
    FLIPS,
    brain_box,
    is_fully_convolutional,
    padded_window,
    predict_probabilities,
    predict_slices,
)
from brats_seg.models import build_model  # noqa: E402


def _tiny_unet() -> dict:
    """The base U-Net config (configs/model/unet.yaml) made tiny."""
    from brats_seg.models import load_model_config

    cfg = dict(load_model_config("unet"))
    cfg.update(name="tiny", filters=[4, 8], bridge_filters=16, batch_norm=False)
    return cfg


TINY_UNET = _tiny_unet()


def tiny_model(shape=(None, None, 4), seed=0):
    keras.utils.set_random_seed(seed)
    return build_model(TINY_UNET, shape)


def symmetrise_kernels(model) -> None:
    """Make every convolution kernel mirror-symmetric in both spatial axes: the model then commutes
    with flips."""
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            kernel, *rest = layer.get_weights()
            kernel = (kernel + kernel[::-1] + kernel[:, ::-1] + kernel[::-1, ::-1]) / 4.0
            layer.set_weights([kernel, *rest])


def volume(shape=(6, 32, 32, 4), seed=1):
    x = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    x[:, :4] = 0.0  # background rows
    return x


def test_flip_tta_of_a_mirror_symmetric_input_equals_no_tta():
    model = tiny_model()
    symmetrise_kernels(model)
    x = volume((4, 32, 32, 4))
    x = (x + x[:, ::-1]) / 2.0  # left-right mirror-symmetric
    plain = predict_probabilities(model, x, divisor=4, tta=False)
    with_tta = predict_probabilities(model, x, divisor=4, tta=True)
    np.testing.assert_allclose(with_tta, plain, atol=2e-6)


def test_flip_tta_averages_the_slice_and_its_left_right_mirror_mapped_back():
    assert FLIPS == ((), (1,))  # the flip of training augmentation (data/augment.py), no other
    model = tiny_model(seed=3)
    x = volume((3, 32, 32, 4), seed=5)
    tta = predict_probabilities(model, x, divisor=4, tta=True)
    # rows 0..3 hold no brain, so the model sees the brain box, rows 4..31 (28 rows, a multiple of
    # 4)
    box = x[:, 4:]
    manual = np.zeros(box.shape[:3] + (4,), np.float32)
    for axes in FLIPS:
        flipped = np.flip(box, axis=axes) if axes else box
        probs = np.asarray(model(np.ascontiguousarray(flipped), training=False))
        manual += np.flip(probs, axis=axes) if axes else probs
    manual /= len(FLIPS)
    np.testing.assert_allclose(tta[:, 4:], manual, atol=2e-6)
    assert np.all(tta[:, :4, :, 0] == 1.0)
    assert not np.allclose(
        tta, predict_probabilities(model, x, divisor=4, tta=False), atol=1e-4
    )  # a plain model is not flip-symmetric


def test_a_fully_convolutional_model_takes_any_multiple_of_its_divisor():
    model = tiny_model()
    assert is_fully_convolutional(model) and not is_fully_convolutional(tiny_model((32, 32, 4)))
    fixed = tiny_model((32, 32, 4))
    fixed.set_weights(
        model.get_weights()
    )  # the same weights: the parameter count does not depend on the size
    assert fixed.count_params() == model.count_params()
    for shape in ((2, 32, 32, 4), (2, 96, 64, 4), (2, 36, 52, 4)):
        x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
        probs = predict_probabilities(model, x, divisor=4, tta=False)
        assert probs.shape == shape[:3] + (4,)
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 4)).astype(np.float32)
    np.testing.assert_allclose(
        predict_probabilities(model, x, divisor=4, tta=False), np.asarray(fixed(x)), atol=1e-6
    )


def test_a_model_of_fixed_size_rebuilt_for_any_size_computes_the_same_function():
    from brats_seg.models.registry import any_size_copy

    fixed = tiny_model((32, 32, 4), seed=3)
    copy = any_size_copy(fixed, TINY_UNET)
    assert is_fully_convolutional(copy) and copy.count_params() == fixed.count_params()
    x = np.random.default_rng(2).normal(size=(2, 32, 32, 4)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(copy(x)), np.asarray(fixed(x)), atol=1e-6)
    assert copy(np.zeros((1, 48, 64, 4), np.float32)).shape == (1, 48, 64, 4)
    assert any_size_copy(copy, TINY_UNET) is copy  # already takes any size


def test_the_any_size_copy_keeps_the_models_precision_policy():
    from brats_seg.models.registry import any_size_copy

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        fixed = tiny_model((32, 32, 4))
    finally:
        keras.config.set_dtype_policy(previous)
    copy = any_size_copy(fixed, TINY_UNET)
    convs = [layer for layer in copy.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(layer.dtype_policy.name == "mixed_bfloat16" for layer in convs)
    assert keras.config.dtype_policy().name == previous.name


def test_only_the_brain_box_is_predicted_and_padded_to_the_divisor():
    x = np.zeros((5, 40, 48, 4), np.float32)
    x[1:3, 7:30, 11:40] = 1.0  # a brain of 23 x 29 pixels on slices 1 and 2
    slices, box = brain_box(x)
    assert slices.tolist() == [1, 2] and box == (7, 30, 11, 40)
    window = padded_window(box, 16)
    assert (window[1] - window[0]) % 16 == 0 and (window[3] - window[2]) % 16 == 0
    assert window[0] <= 7 and window[1] >= 30 and window[2] <= 11 and window[3] >= 40
    model = tiny_model()
    probs = predict_probabilities(model, x, divisor=16, tta=False)
    outside = np.ones(x.shape[:3], bool)
    outside[1:3, window[0] : window[1], window[2] : window[3]] = False
    assert np.all(probs[outside][:, 0] == 1.0)  # background without running the model
    assert not np.all(probs[1:3, 7:30, 11:40, 0] == 1.0)
    assert predict_slices(model, np.zeros((3, 32, 32, 4), np.float32), tta=False).max() == 0


def test_postprocessing_removes_a_small_component_and_keeps_the_large_one():
    classes = np.zeros((40, 40, 30), np.uint8)
    classes[5:25, 5:25, 5:20] = 2  # a large tumour: 6000 voxels of edema ...
    classes[10:20, 10:20, 8:16] = 3  # ... around 800 voxels of ET
    classes[32:35, 32:35, 25:28] = 2  # a planted 27-voxel component far away
    out = postprocess(classes, PostprocessSettings(min_component=100))
    assert np.count_nonzero(out[32:35, 32:35, 25:28]) == 0
    np.testing.assert_array_equal(out[:30, :30], classes[:30, :30])
    assert postprocess(classes, PostprocessSettings()) is classes  # off: untouched


def test_postprocessing_keeps_components_above_a_share_of_the_largest():
    classes = np.zeros((60, 60, 30), np.uint8)
    classes[5:25, 5:25, 5:20] = 2  # the tumour: 6000 voxels
    classes[40:50, 40:50, 5:11] = 2  # 600 voxels: 10% of it
    classes[40:45, 5:10, 20:24] = 1  # 100 voxels: under 2%
    out = postprocess(classes, PostprocessSettings(min_component_share=0.05))
    np.testing.assert_array_equal(out[:30, :30], classes[:30, :30])
    np.testing.assert_array_equal(out[40:50, 40:50], classes[40:50, 40:50])
    assert np.count_nonzero(out[40:45, 5:10]) == 0
    largest = postprocess(classes, PostprocessSettings(min_component_share=1.0))
    assert np.count_nonzero(largest) == 6000
    # the absolute floor and the share combine: the larger of the two applies
    both = postprocess(classes, PostprocessSettings(min_component=700, min_component_share=0.01))
    assert np.count_nonzero(both) == 6000


def test_postprocessing_relabels_small_et_as_necrosis():
    classes = np.zeros((30, 30, 20), np.uint8)
    classes[5:25, 5:25, 5:15] = 2
    classes[10:13, 10:13, 8:11] = 3  # 27 voxels of ET
    out = postprocess(classes, PostprocessSettings(et_min_volume=50))
    assert not np.any(out == 3) and np.count_nonzero(out == 1) == 27
    kept = postprocess(classes, PostprocessSettings(et_min_volume=20))
    np.testing.assert_array_equal(kept, classes)


def test_postprocessing_options_are_checked():
    assert PostprocessSettings.from_cfg({"min_component": 10, "et_min_volume": None}).as_dict() == {
        "min_component": 10,
        "et_min_volume": 0,
        "min_component_share": 0.0,
        "tc_min_component": 0,
        "et_min_component": 0,
        "wt_threshold": 0.0,
        "tc_threshold": 0.0,
        "et_threshold": 0.0,
    }
    with pytest.raises(ConfigError, match="postprocess.size: unknown option"):
        PostprocessSettings.from_cfg({"size": 3})
    # the values' domains are the schema's, checked when the config is composed
    from brats_seg.config import check_options, compose

    for override, message in (
        ("postprocess.min_component_share=1.5", "postprocess.min_component_share=1.5: must be"),
        ("postprocess.min_component=-1", "postprocess.min_component=-1: must be >= 0"),
    ):
        with pytest.raises(ConfigError) as err:
            check_options(compose("predict", ["run=r", "input=i", override]))
        assert message in str(err.value)
