"""Fixed-size axial crop centred on the brain, and pasting a cropped prediction back into the full
volume.

A crop box is ``(x0, x1, y0, y1)``: rows ``x0:x1`` (array axis 0) and columns ``y0:y1`` (axis 1) of
every axial slice ``vol[:, :, z]``.
"""

from __future__ import annotations

import math

import numpy as np

from brats_seg.errors import ConfigError

CropBox = tuple[int, int, int, int]


def brain_bbox(mask: np.ndarray) -> CropBox | None:
    """Bounding box ``(x0, x1, y0, y1)`` (ends exclusive) of a 3D mask over all slices; None if it
    is empty."""
    rows = np.flatnonzero(mask.any(axis=(1, 2)))
    cols = np.flatnonzero(mask.any(axis=(0, 2)))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def centred_crop_box(mask: np.ndarray, size: tuple[int, int], case_id: str = "") -> CropBox:
    """A ``size`` (H, W) box centred on the mask's bounding box and clamped inside the volume."""
    height, width = size
    rows, cols = mask.shape[:2]
    if height > rows or width > cols:
        where = f"case {case_id}'s" if case_id else "the volume's"
        raise ConfigError(
            f"data.preprocess.crop.size {[height, width]} is larger than {where} axial size "
            f"{rows}x{cols}"
        )
    bbox = brain_bbox(mask) or (0, rows, 0, cols)
    x0 = _centred_start(bbox[0], bbox[1], height, rows)
    y0 = _centred_start(bbox[2], bbox[3], width, cols)
    return x0, x0 + height, y0, y0 + width


def _centred_start(lo: int, hi: int, size: int, limit: int) -> int:
    start = math.floor((lo + hi) / 2 - size / 2 + 0.5)
    return max(0, min(start, limit - size))


def crop_volume(vol: np.ndarray, box: CropBox) -> np.ndarray:
    """``vol[x0:x1, y0:y1, ...]`` (a view)."""
    x0, x1, y0, y1 = box
    return vol[x0:x1, y0:y1]


def uncrop(
    cropped: np.ndarray, box: CropBox, full_shape: tuple[int, int, int], *, layout: str = "volume"
) -> np.ndarray:
    """Paste a cropped array back into zeros of the full size.

    ``layout="volume"``: ``cropped`` is (h, w, Z, ...) and the result (X, Y, Z, ...);
    ``layout="slices"``: ``cropped`` is (Z, h, w, ...) and the result (Z, X, Y, ...).
    ``full_shape`` is the volume's (X, Y, Z) either way.
    """
    x0, x1, y0, y1 = box
    X, Y, Z = full_shape
    if layout == "volume":
        expected, out_shape = (x1 - x0, y1 - y0, Z), (X, Y, Z)
        index = (slice(x0, x1), slice(y0, y1))
    elif layout == "slices":
        expected, out_shape = (Z, x1 - x0, y1 - y0), (Z, X, Y)
        index = (slice(None), slice(x0, x1), slice(y0, y1))
    else:
        raise ValueError(f"layout must be 'volume' or 'slices', got {layout!r}")
    if tuple(cropped.shape[:3]) != expected:
        raise ValueError(
            f"cropped array has shape {cropped.shape}, expected {expected} + trailing axes"
        )
    out = np.zeros(out_shape + tuple(cropped.shape[3:]), dtype=cropped.dtype)
    out[index] = cropped
    return out
