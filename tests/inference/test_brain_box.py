"""A fully convolutional model predicts the brain's box on the divisor grid of the whole slice, and
gives the whole slice's classes inside the brain (issue 25, item 3)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from brats_seg.inference.slices import brain_box, padded_window

keras = pytest.importorskip("keras")


def test_the_window_lies_on_the_divisor_grid_of_the_slice():
    # rows 52..188, columns 40..211 (a real brain's box): the grid's multiples of 16 around them
    assert padded_window((52, 188, 40, 211), 16) == (48, 192, 32, 224)
    assert padded_window((0, 240, 16, 32), 16) == (0, 240, 16, 32)
    assert padded_window((3, 5, 7, 9), 1) == (3, 5, 7, 9)


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_brain_box_prediction_agrees_with_the_whole_slice_on_a_real_case(real_data_root):
    """The recipe's batch-norm U-Net, random weights, on the first real case: the box's classes
    inside the brain agree with the whole slice's (0.99988 measured; 0.982 with the box centred on
    the brain instead of the grid)."""
    from brats_seg.config import compose
    from brats_seg.data.discovery import find_cases
    from brats_seg.data.nifti import load_case
    from brats_seg.data.preprocess import preprocess_case
    from brats_seg.data.settings import PreprocessSettings
    from brats_seg.inference.slices import predict_probabilities
    from brats_seg.models.registry import any_size_copy, build_model, divisor

    case = sorted(find_cases(real_data_root), key=lambda c: c.case_id)[0]
    x = preprocess_case(load_case(case), PreprocessSettings.default()).x
    slices, _ = brain_box(x)
    x = x[slices]
    cfg = compose("train", ["recipe=real_cpu"])
    keras.utils.set_random_seed(0)
    whole_slice = build_model(cfg.model, x.shape[1:])
    any_size = any_size_copy(whole_slice, cfg.model)
    div = divisor(cfg.model)
    brain = np.any(x != 0, axis=-1)
    whole = np.argmax(predict_probabilities(whole_slice, x, 8, divisor=div, tta=False), -1)
    boxed = np.argmax(predict_probabilities(any_size, x, 8, divisor=div, tta=False), -1)
    assert np.unique(whole[brain]).size > 1  # the random model does not predict one class
    assert np.mean(whole[brain] == boxed[brain]) >= 0.999


def test_a_model_with_whole_input_statistics_is_warned_about(caplog):
    from brats_seg.config import compose
    from brats_seg.inference.slices import predict_probabilities, whole_input_layers
    from brats_seg.models.registry import build_model

    cfg = compose(
        "train",
        [
            "model=unet",
            "model.batch_norm=true",
            "model.norm_layer=instance",
            "model.filters=[4,8]",
            "model.bridge_filters=16",
        ],
    )
    model = build_model(cfg.model, (None, None, 4))
    assert whole_input_layers(model)
    x = np.zeros((1, 24, 24, 4), np.float32)
    x[0, 5:15, 6:18] = 1.0
    with caplog.at_level(logging.WARNING, logger="brats_seg.inference.slices"):
        predict_probabilities(model, x, divisor=4, tta=False)
    assert any("whole input" in r.getMessage() for r in caplog.records)
    plain = build_model(compose("train", ["model=unet"]).model, (None, None, 4))
    assert whole_input_layers(plain) == []
