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


def to_source_grid(pred_slices: np.ndarray, full_shape, crop_box=None) -> np.ndarray:
    """(Z, H, W) slice predictions -> (X, Y, Z) volume on the source grid, pasting a crop back in place."""
    x_size, y_size, z_size = (int(s) for s in full_shape)
    if pred_slices.shape[0] != z_size:
        raise ValueError(f"prediction has {pred_slices.shape[0]} slices, volume has {z_size}")
    full = np.zeros((z_size, x_size, y_size), dtype=np.uint8)
    if crop_box is None:
        full[:] = pred_slices
    else:
        x0, x1, y0, y1 = (int(v) for v in crop_box)
        full[:, x0:x1, y0:y1] = pred_slices
    return np.ascontiguousarray(np.transpose(full, (1, 2, 0)))
