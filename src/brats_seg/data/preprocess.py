"""Turn a loaded case into model input: per-modality normalisation, optional fifth channel, crop,
slices in the plane of ``data.plane``.

The same function serves the training cache and prediction, so a model always sees identically
prepared input. Axial slice z of a volume is ``vol[:, :, z]`` (rows: array axis X, columns: axis Y);
planes.py gives the sagittal and coronal ones; arrays for the model are (S, H, W, C).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from brats_seg.data.crop import CropBox, centred_crop_box, crop_volume, uncrop
from brats_seg.data.nifti import LoadedCase
from brats_seg.data.planes import AXIAL, in_plane_axes, slices_to_volume, volume_to_slices
from brats_seg.data.settings import PreprocessSettings

FLAIR_CHANNEL = 3

# The version of what load_case + preprocess_case + slice selection produce from given files and
# settings; part of the cache key. Bump it with any change to their output:
# tests/data/test_preprocess_version.py pins a fixed case's output hash to this number and fails
# when the output changes and the number does not.
PREPROCESS_VERSION = 1


@dataclass
class PreprocessedCase:
    case_id: str
    x: np.ndarray  # (S, H, W, C) float32: the plane's slices
    y: np.ndarray | None  # (S, H, W) uint8 classes, or None without a segmentation
    crop_box: CropBox | None  # None when cropping is off
    full_shape: tuple[int, int, int]  # (X, Y, Z) of the original volume
    brain_pixels: np.ndarray  # (S,) int64: non-zero image pixels per (cropped) slice
    cut_brain: int = 0  # brain voxels (non-zero in any modality) outside the crop box
    cut_tumour: int | None = None  # tumour voxels (class > 0) outside the box; None without a seg
    plane: str = AXIAL


def normalize(
    vol: np.ndarray, mask: np.ndarray, method: str, percentiles: tuple[float, float] = (0.5, 99.5)
) -> np.ndarray:
    """Normalise ``vol`` using the statistics of its voxels inside ``mask``; voxels outside stay 0.

    zscore: (v - mean) / std; minmax: (v - min) / (max - min); percentile: clip to the two
    percentiles, then scale that range to [0, 1]. A constant brain gives 0 everywhere.
    """
    out = np.zeros(vol.shape, dtype=np.float32)
    values = vol[mask].astype(np.float64)
    if values.size == 0:
        return out
    if method == "zscore":
        offset, scale = values.mean(), values.std()
    elif method == "minmax":
        offset, scale = values.min(), values.max() - values.min()
    elif method == "percentile":
        lo, hi = np.percentile(values, percentiles)
        values = np.clip(values, lo, hi)
        offset, scale = lo, hi - lo
    else:
        raise ValueError(f"unknown normalisation {method!r}")
    out[mask] = (values - offset) / scale if scale > 0 else 0.0
    return out


def flair_edges(flair: np.ndarray, sigma: float, plane: str = AXIAL) -> np.ndarray:
    """Gradient magnitude of the Gaussian-smoothed FLAIR, per slice of ``plane`` (2D: no smoothing
    or gradient across the slices).

    Computed on the brain-z-scored FLAIR, whose background (0) equals the brain mean, so the brain
    outline does not dominate the map whatever normalisation the other channels use. Uses the images
    only, never labels.
    """
    zscored = normalize(flair, flair != 0, "zscore")
    rows, cols = in_plane_axes(plane)
    # scipy skips axes with sigma 0: the filter is 2D on every slice
    sigmas = tuple(sigma if axis in (rows, cols) else 0.0 for axis in range(3))
    d_rows, d_cols = (
        ndimage.gaussian_filter(zscored, sigmas, order=tuple(int(a == axis) for a in range(3)))
        for axis in (rows, cols)
    )
    return np.hypot(d_rows, d_cols).astype(np.float32)


def preprocess_case(loaded: LoadedCase, settings: PreprocessSettings) -> PreprocessedCase:
    """Normalise, add the fifth channel, crop and slice one case in the settings' plane (labels
    are cropped and sliced alike)."""
    plane = settings.plane
    image = loaded.image
    full_shape = tuple(int(s) for s in image.shape[:3])
    brain = image[..., 0] != 0
    for c in range(1, image.shape[-1]):
        brain |= image[..., c] != 0
    box = (
        centred_crop_box(brain, settings.crop_size, loaded.case_id) if settings.crop_size else None
    )
    view = (lambda vol: crop_volume(vol, box)) if box else (lambda vol: vol)

    channels = [_normalized_channel(image[..., c], settings) for c in range(image.shape[-1])]
    if settings.fifth_channel == "flair_edges":
        flair = image[..., FLAIR_CHANNEL]
        edges = flair_edges(flair, settings.fifth_channel_sigma, plane)
        channels.append(normalize(edges, flair != 0, settings.normalization, settings.percentiles))

    slices = lambda vol: volume_to_slices(view(vol), plane)  # noqa: E731
    x = np.empty(slices(brain).shape + (len(channels),), dtype=np.float32)
    for c, channel in enumerate(channels):
        x[..., c] = slices(channel)
    if settings.context_slices:
        x = add_context(x, settings.context_slices)
    y = slices(loaded.seg).copy() if loaded.seg is not None else None
    brain_pixels = np.count_nonzero(slices(brain), axis=(1, 2)).astype(np.int64)
    cut_brain = int(np.count_nonzero(brain)) - int(brain_pixels.sum())
    cut_tumour = None
    if loaded.seg is not None:
        cut_tumour = int(np.count_nonzero(loaded.seg)) - int(np.count_nonzero(y))
    return PreprocessedCase(
        loaded.case_id, x, y, box, full_shape, brain_pixels, cut_brain, cut_tumour, plane
    )


def add_context(x: np.ndarray, k: int) -> np.ndarray:
    """2.5D input: (Z, H, W, C) -> (Z, H, W, C * (2k + 1)).

    The slice's own C channels come first (so channel 3 is still its FLAIR), then the C channels of
    slice z-k, ..., z-1, z+1, ..., z+k; a neighbour beyond the volume's ends is zeros (background).
    """
    depth = x.shape[0]
    parts = [x]
    for offset in [*range(-k, 0), *range(1, k + 1)]:
        shifted = np.zeros_like(x)
        lo, hi = max(0, -offset), min(depth, depth - offset)
        shifted[lo:hi] = x[lo + offset : hi + offset]
        parts.append(shifted)
    return np.concatenate(parts, axis=-1)


def _normalized_channel(vol: np.ndarray, settings: PreprocessSettings) -> np.ndarray:
    return normalize(vol, vol != 0, settings.normalization, settings.percentiles)


def on_cached_grid(classes_full: np.ndarray, crop_box, plane: str = AXIAL) -> np.ndarray:
    """A full (X, Y, Z) class volume as (S, H, W) slices of the cached (possibly cropped) grid of
    ``plane``."""
    if crop_box is not None:
        x0, x1, y0, y1 = (int(v) for v in crop_box)
        classes_full = classes_full[x0:x1, y0:y1]
    return np.ascontiguousarray(volume_to_slices(classes_full, plane))


def restore_prediction(
    classes: np.ndarray,
    crop_box: CropBox | None,
    full_shape: tuple[int, int, int],
    plane: str = AXIAL,
) -> np.ndarray:
    """An (S, H, W) class stack predicted on preprocessed slices of ``plane`` -> (X, Y, Z) uint8 in
    the original volume's grid."""
    volume = np.ascontiguousarray(slices_to_volume(np.asarray(classes, dtype=np.uint8), plane))
    if crop_box is None:
        if volume.shape != tuple(full_shape):
            raise ValueError(
                f"prediction of shape {volume.shape} does not fill the volume {tuple(full_shape)}"
            )
        return volume
    return uncrop(volume, tuple(crop_box), tuple(full_shape), layout="volume")
