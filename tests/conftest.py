"""Shared fixtures. The real BraTS cases are read from ../shared/data/brats-real beside the repository."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("BRATS_SEG_REAL_DATA", REPO_ROOT.parent / "shared" / "data" / "brats-real"))


@pytest.fixture(scope="session")
def real_data_root() -> Path:
    if not (REAL_DATA / "BraTS2021_00000").is_dir():
        pytest.skip(f"real BraTS cases not found at {REAL_DATA} (set BRATS_SEG_REAL_DATA)")
    return REAL_DATA


def blob_case(shape: tuple[int, int, int] = (32, 32, 16), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A small BraTS-like case for tests and benchmarks: an ellipsoidal brain with noisy intensities (int-valued,
    zero outside) and a spherical tumour (edema around a necrotic core with an enhancing rim).

    Returns ``image`` (X, Y, Z, 4) float32 and ``classes`` (X, Y, Z) uint8.
    """
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"), axis=-1)
    centre = np.array(shape, dtype=np.float32) / 2 - 0.5
    brain = (((grid - centre) / (np.array(shape) * 0.42)) ** 2).sum(-1) <= 1.0
    image = np.zeros(shape + (4,), dtype=np.float32)
    for c in range(4):
        noise = rng.normal(100.0 * (c + 1), 15.0, size=shape)
        image[..., c] = np.where(brain, np.maximum(np.rint(noise), 1.0), 0.0)
    tumour_centre = centre + rng.uniform(-0.12, 0.12, size=3) * np.array(shape)
    radius = 0.22 * min(shape[:2])
    dist = np.sqrt(((grid - tumour_centre) ** 2).sum(-1))
    classes = np.zeros(shape, dtype=np.uint8)
    classes[(dist <= radius) & brain] = 2
    classes[dist <= 0.65 * radius] = 3
    classes[dist <= 0.4 * radius] = 1
    image[..., 3] += np.where(classes > 0, 80.0, 0.0)  # tumour is bright on FLAIR
    return image, classes
