"""Temperature scaling (inference/calibration.py) on synthetic probabilities of known
calibration."""

from __future__ import annotations

import numpy as np
import pytest

from brats_seg.inference.calibration import fit_temperature, mean_nll, temper
from brats_seg.metrics.calibration import expected_calibration_error


def _calibrated(n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of 4 classes and true classes drawn from them: calibrated by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 4)) * 2.0
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    truth = (rng.random(n)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
    return probs, truth


def _power(probs: np.ndarray, k: float) -> np.ndarray:
    out = probs**k
    return out / out.sum(axis=1, keepdims=True)


def test_over_confident_probabilities_get_a_temperature_above_one_and_a_lower_ece():
    probs, truth = _calibrated()
    sharp = _power(probs, 3.0)  # p**3 renormalised: softmax(3 * logits), over-confident
    temperature = fit_temperature(sharp, truth)
    assert 2.7 < temperature < 3.3
    before = expected_calibration_error(sharp, truth)
    after = expected_calibration_error(temper(sharp, temperature), truth)
    assert after < before / 5
    assert mean_nll(sharp, truth, temperature) < mean_nll(sharp, truth)


def test_under_confident_probabilities_get_a_temperature_below_one():
    probs, truth = _calibrated(seed=1)
    assert fit_temperature(_power(probs, 0.5), truth) == pytest.approx(0.5, abs=0.06)


def test_temper_is_the_renormalised_power_and_keeps_the_top_class():
    probs, _ = _calibrated(n=100)
    probs[0] = [1.0, 0.0, 0.0, 0.0]  # a probability that underflowed to 0 stays finite
    tempered = temper(probs.astype(np.float32), 2.5)
    assert np.all(np.isfinite(tempered))
    np.testing.assert_allclose(tempered, _power(probs, 1 / 2.5), rtol=1e-4, atol=1e-6)
    assert np.array_equal(tempered.argmax(axis=1), probs.argmax(axis=1))
    np.testing.assert_allclose(tempered.sum(axis=1), 1.0, rtol=1e-5)
