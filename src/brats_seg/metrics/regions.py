"""BraTS region metrics per patient on 3D label volumes (numpy + scipy only).

Labels 0..3 with ET = 3 (BraTS label 4 already remapped). Regions are unions of labels:
WT = {1, 2, 3}, TC = {1, 3}, ET = {3}.

Dice = 2|A and B| / (|A| + |B|).

HD95 (mm) follows the usual symmetric surface-distance definition (medpy / nnU-Net): the surface of
a mask is the mask minus its binary erosion (6-connected structuring element, outside the volume
counts as background); for every surface voxel of A the Euclidean distance to the nearest surface
voxel of B, and vice versa, in mm via ``distance_transform_edt(sampling=spacing)``; HD95 is the 95th
percentile of the union of both sets. The distance transforms run on the bounding box of both masks
plus a margin, which gives the same distances as the full volume (every surface voxel lies inside
the box) at a fraction of the cost.

Empty regions (a region absent from prediction and/or reference), ``empty_rule``:
  - "brats" (default; BraTS 2017-2021 and nnU-Net): both empty -> Dice 1, HD95 0;
    exactly one empty -> Dice 0, HD95 373.13 (the diagonal of a 240x240x155 volume at 1 mm, whatever
    the spacing).
  - "nan" (the official brats-evaluation package): both empty -> Dice NaN, HD95 NaN (skipped by
    ``summarise``); exactly one empty -> Dice 0, HD95 373.13.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from brats_seg.config_schema import EmptyRule, choices
from brats_seg.data.labels import REGIONS
from brats_seg.errors import ConfigError, DataError

EMPTY_RULES: tuple[str, ...] = choices(EmptyRule)  # declared in the config schema
# sqrt(240^2 + 240^2 + 155^2) = 373.129...
HD95_EMPTY = 373.13
_MARGIN = 2
_SURFACE_STRUCTURE = ndimage.generate_binary_structure(3, 1)


def check_empty_rule(empty_rule: str) -> str:
    if empty_rule not in EMPTY_RULES:
        raise ConfigError(
            f"evaluate.empty_rule: must be one of {', '.join(EMPTY_RULES)}, got {empty_rule!r}"
        )
    return empty_rule


def _empty_case(
    pred_mask: np.ndarray,
    ref_mask: np.ndarray,
    empty_rule: str,
    both_empty_brats: float,
    one_empty: float,
) -> float | None:
    """The value fixed by the empty-region rule, or None when both masks are non-empty."""
    check_empty_rule(empty_rule)
    pred_any, ref_any = bool(pred_mask.any()), bool(ref_mask.any())
    if pred_any and ref_any:
        return None
    if not pred_any and not ref_any:
        return both_empty_brats if empty_rule == "brats" else math.nan
    return one_empty


def dice(pred_mask: np.ndarray, ref_mask: np.ndarray, empty_rule: str = "brats") -> float:
    """Dice of two boolean masks. Both empty: 1 ("brats") or NaN ("nan"); exactly one empty: 0."""
    pred_mask, ref_mask = _bool_pair(pred_mask, ref_mask)
    fixed = _empty_case(pred_mask, ref_mask, empty_rule, both_empty_brats=1.0, one_empty=0.0)
    if fixed is not None:
        return fixed
    overlap = np.count_nonzero(pred_mask & ref_mask)
    return 2.0 * overlap / (np.count_nonzero(pred_mask) + np.count_nonzero(ref_mask))


def hd95(
    pred_mask: np.ndarray,
    ref_mask: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    empty_rule: str = "brats",
) -> float:
    """95th-percentile symmetric surface distance in mm (see the module docstring for the
    definition).

    ``spacing`` is the voxel size along each array axis. Both masks empty: 0 ("brats") or NaN
    ("nan"); exactly one empty: 373.13.
    """
    pred_mask, ref_mask = _bool_pair(pred_mask, ref_mask)
    spacing = _checked_spacing(spacing, pred_mask.ndim)
    fixed = _empty_case(pred_mask, ref_mask, empty_rule, both_empty_brats=0.0, one_empty=HD95_EMPTY)
    if fixed is not None:
        return fixed
    to_ref, to_pred = surface_distances(pred_mask, ref_mask, spacing)
    return float(np.percentile(np.concatenate([to_ref, to_pred]), 95))


def surface_distances(
    pred_mask: np.ndarray, ref_mask: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """The two directed surface-distance sets (mm) of two non-empty masks: from every surface voxel
    of the prediction to the nearest surface voxel of the reference, and the other way round."""
    pred_mask, ref_mask = _bool_pair(pred_mask, ref_mask)
    spacing = _checked_spacing(spacing, pred_mask.ndim)
    box = _bounding_box(pred_mask | ref_mask, _MARGIN)
    pred_surface = _surface(pred_mask[box])
    ref_surface = _surface(ref_mask[box])
    to_ref = ndimage.distance_transform_edt(~ref_surface, sampling=spacing)[pred_surface]
    to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=spacing)[ref_surface]
    return to_ref, to_pred


def region_scores(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    empty_rule: str = "brats",
) -> dict[str, dict[str, float]]:
    """Dice and HD95 of WT, TC and ET for one patient: ``{"WT": {"dice": x, "hd95": x}, "TC": ...,
    "ET": ...}``.

    ``pred`` and ``ref`` are 3D label volumes (0..3, ET = 3) of the same shape.
    """
    check_empty_rule(empty_rule)
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape or pred.ndim != 3:
        raise DataError(
            f"region scores: need two 3D volumes of one shape, got {pred.shape} and {ref.shape}"
        )
    for volume, what in ((pred, "prediction"), (ref, "reference")):
        if volume.size and (volume.min() < 0 or volume.max() > 3):
            raise DataError(
                f"region scores: {what} labels must be in 0..3 (ET = 3), found "
                f"{volume.min()}..{volume.max()}"
            )
    scores = {}
    for region, labels in REGIONS.items():
        pred_mask, ref_mask = np.isin(pred, labels), np.isin(ref, labels)
        scores[region] = {
            "dice": float(dice(pred_mask, ref_mask, empty_rule)),
            "hd95": float(hd95(pred_mask, ref_mask, spacing, empty_rule)),
        }
    return scores


def summarise(per_patient: list[dict]) -> dict[str, dict[str, float]]:
    """Mean and median over patients of each region's Dice and HD95, NaN entries skipped.

    Returns ``{"WT": {"dice_mean", "dice_median", "hd95_mean", "hd95_median"}, "TC": ..., "ET":
    ...}``; a statistic with no non-NaN value (or no patients) is NaN.
    """
    summary = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for region in REGIONS:
            summary[region] = {}
            for metric in ("dice", "hd95"):
                values = np.array(
                    [patient[region][metric] for patient in per_patient], dtype=np.float64
                )
                summary[region][f"{metric}_mean"] = (
                    float(np.nanmean(values)) if values.size else math.nan
                )
                summary[region][f"{metric}_median"] = (
                    float(np.nanmedian(values)) if values.size else math.nan
                )
    return summary


def _bool_pair(pred_mask: np.ndarray, ref_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred_mask, ref_mask = np.asarray(pred_mask, dtype=bool), np.asarray(ref_mask, dtype=bool)
    if pred_mask.shape != ref_mask.shape:
        raise DataError(f"region masks differ in shape: {pred_mask.shape} vs {ref_mask.shape}")
    return pred_mask, ref_mask


def _checked_spacing(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    values = tuple(float(s) for s in spacing)
    if len(values) != ndim or not all(s > 0 and math.isfinite(s) for s in values):
        raise DataError(f"voxel spacing must be {ndim} positive numbers, got {tuple(spacing)}")
    return values


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others))
        box.append(slice(max(hits[0] - margin, 0), min(hits[-1] + margin + 1, mask.shape[axis])))
    return tuple(box)


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of the mask with at least one 6-neighbour outside it (outside the array counts as
    outside)."""
    structure = (
        _SURFACE_STRUCTURE if mask.ndim == 3 else ndimage.generate_binary_structure(mask.ndim, 1)
    )
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)
