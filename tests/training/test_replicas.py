"""Every registered loss trains the same on one device and mirrored over two logical CPUs.

Keras divides its own losses by the replica count (it sums the replicas' gradients); a loss that
returns a scalar skips that division, so without care the loss and the gradients come out N times
too large. Each strategy runs in its own process (tests/training/replica_step.py), since logical
CPUs must be set before TensorFlow starts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from brats_seg.losses import LOSS_NAMES

from conftest import run_python

STEP_SCRIPT = Path(__file__).with_name("replica_step.py")
TOLERANCE = 1e-5


def _one_step(devices: int, out: Path) -> dict[str, np.ndarray]:
    result = run_python(STEP_SCRIPT, devices, out)
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(out) as saved:
        return {key: saved[key] for key in saved.files}


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    folder = tmp_path_factory.mktemp("replicas")
    return _one_step(1, folder / "one.npz"), _one_step(2, folder / "two.npz")


@pytest.mark.slow
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_one_sgd_step_is_the_same_on_two_replicas(steps, name):
    one, two = steps
    weights = sorted(key for key in one if key.startswith(f"{name}/weight"))
    assert weights
    moved = max(np.abs(one[key] - one[key.replace("/weight", "/initial")]).max() for key in weights)
    assert moved > 100 * TOLERANCE  # the step is large enough for an N-times gradient to show
    for key in weights:
        np.testing.assert_allclose(two[key], one[key], atol=TOLERANCE, rtol=0, err_msg=key)
    for measure in ("fit_loss", "eval_loss"):
        assert abs(float(two[f"{name}/{measure}"]) - float(one[f"{name}/{measure}"])) < TOLERANCE, (
            measure
        )


@pytest.mark.slow
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_tumour_dice_is_pooled_over_the_replicas(steps, name):
    one, two = steps
    for measure in ("fit_tumour_dice", "eval_tumour_dice"):
        value = float(one[f"{name}/{measure}"])
        assert 0.0 < value < 1.0
        assert abs(float(two[f"{name}/{measure}"]) - value) < TOLERANCE, measure
