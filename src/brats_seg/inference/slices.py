"""Slice-wise prediction of a preprocessed volume and its return to the source grid."""

from __future__ import annotations

import numpy as np


def predict_slices(model, x: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Class map (Z, H, W) uint8 for a preprocessed volume ``x`` (Z, H, W, C).

    Slices without a single non-zero voxel (outside the skull-stripped brain) are background without running the
    model; every other axial slice is predicted.
    """
    z = x.shape[0]
    out = np.zeros(x.shape[:3], dtype=np.uint8)
    brain = np.flatnonzero(np.any(x.reshape(z, -1) != 0, axis=1))
    for start in range(0, len(brain), batch_size):
        idx = brain[start : start + batch_size]
        probs = model(np.ascontiguousarray(x[idx], dtype=np.float32), training=False)
        if isinstance(probs, (list, tuple)):
            probs = probs[0]
        out[idx] = np.argmax(np.asarray(probs, dtype=np.float32), axis=-1).astype(np.uint8)
    return out
