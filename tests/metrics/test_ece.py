"""The expected calibration error and its reliability table (metrics/calibration.py)."""

from __future__ import annotations

import numpy as np
import pytest

from brats_seg.metrics.calibration import (
    ECE_BINS,
    ReliabilityTable,
    expected_calibration_error,
)


def _probs(top: list[float], classes: list[int], k: int = 4) -> np.ndarray:
    """One voxel per entry: ``top`` on class ``classes[i]``, the rest spread evenly."""
    out = np.zeros((len(top), k))
    for i, (p, c) in enumerate(zip(top, classes, strict=True)):
        out[i] = (1 - p) / (k - 1)
        out[i, c] = p
    return out


def test_ece_by_hand():
    # 15 bins of width 1/15: 0.9 falls in (0.867, 0.933], 0.58 and 0.55 in (0.533, 0.6].
    probs = _probs([0.9, 0.9, 0.58, 0.55], [1, 2, 0, 3])
    truth = np.array([1, 0, 0, 3])  # right, wrong, right, right
    expected = 2 / 4 * abs(0.5 - 0.9) + 2 / 4 * abs(1.0 - (0.58 + 0.55) / 2)
    assert expected_calibration_error(probs, truth) == pytest.approx(expected)


def test_table_adds_case_by_case_as_in_one_go():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(4), size=500)
    truth = rng.integers(0, 4, size=500)
    table = ReliabilityTable()
    table.add(probs[:200], truth[:200])
    table.add(probs[200:], truth[200:])
    record = table.as_dict()
    assert record["ece"] == pytest.approx(expected_calibration_error(probs, truth))
    assert record["voxels"] == 500 and sum(record["bin_voxels"]) == 500
    assert len(record["bin_edges"]) == ECE_BINS + 1
    # a top-class confidence is at least 1/K, so the bins below 0.25 stay empty: null, not NaN
    assert record["bin_accuracy"][0] is None and record["bin_confidence"][0] is None


def test_perfect_and_no_voxels():
    probs = _probs([1.0, 1.0], [0, 2])
    assert expected_calibration_error(probs, np.array([0, 2])) == 0.0
    assert np.isnan(ReliabilityTable().ece())
