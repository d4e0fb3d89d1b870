"""Lesion-wise Dice and HD95 of WT, TC and ET, in the two conventions BraTS has ranked by (numpy +
scipy only).

A lesion is a connected component of a region mask (26-connected, as cc3d's default). Two
conventions:

``brats2024`` -- the official ``brats-evaluation`` package (2024 on, adult-glioma ``gli`` config,
built on panoptica). Reference and prediction lesions are matched one to one by a maximum bipartite
matching (``scipy.optimize.linear_sum_assignment``) on cost ``1 - Dice``; a pair counts only if its
Dice is at least 1e-6. tp = matched pairs, fp = unmatched predicted lesions, fn = unmatched
reference lesions. ``dsc_mean`` (the package's ``lesionwise_dsc_mean``, panoptica's ``sq_dsc``) is
the mean Dice over the matched pairs and ``hd95_mean`` (``lesionwise_hd95_mean``, ``sq_hd95``) their
mean HD95; unmatched lesions do not enter these means, they show in fp/fn. With no match: Dice 0 and
HD95 infinite when there is any lesion at all, both NaN when neither side has one. HD95 per pair is
the pooled 95th percentile of both directed surface-distance sets (6-connected borders), the same
definition as ``brats_seg.metrics.regions.hd95``.

``brats2023`` -- the 2023 challenge's metrics script. The reference mask is dilated (3 iterations of
the 18-connected cross, ``dilation``); reference lesions that fall into one component of the dilated
mask merge into one lesion. Each merged reference lesion is dilated again; every predicted lesion
touching that dilation is matched to it (several may be), and the lesion's Dice and HD95 are taken
between it and the union of its matched predictions (no match: Dice 0, HD95 374). Predicted lesions
matched to no reference lesion are false positives. Reference lesions of volume <=
``volume_threshold`` mm^3 (50) are dropped from the score (their matched predictions are still not
false positives). The case's scores are ``dice = sum(lesion Dice) / (lesions + fp)`` and ``hd95 =
(sum(lesion HD95) + 374 * fp) / (lesions + fp)``; with neither lesions nor false positives, Dice 1
and HD95 0. A matched lesion's HD95 is the script's own: DeepMind's surface-distance package
(``compute_surface_distances`` and ``compute_robust_hausdorff`` at 95), which weights each surface
element by its area (marching-cubes elements on the grid of voxel corners) and takes, in each
direction, the first distance whose cumulative area reaches 95%, then the larger of the two. That is
not the pooled voxel percentile of the official convention: a prediction with a one-voxel tail of
30 voxels off a well-found lesion scores 18.0 mm here and 0 pooled (tests/metrics/test_lesions.py).
Dice, the matching, the counts and the 374 penalties are the script's."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from brats_seg.data.labels import REGIONS
from brats_seg.metrics.regions import hd95

CONVENTIONS: tuple[str, ...] = ("brats2024", "brats2023")
CONVENTION_NAMES = {
    "brats2024": "official brats-evaluation package (panoptica, gli; BraTS 2024 on)",
    "brats2023": (
        "BraTS 2023 metrics script (GT lesions merged by dilation, FP/FN scored 0 / 374 mm)"
    ),
}
# The official convention's lesion-wise HD95 of a patient with lesions but no match is infinite, as
# the package (panoptica's sq_hd95) reports it per subject; its parser (metrics_parser.py, seg)
# keeps it so and takes the plain mean over subjects, which is then infinite too. It puts 373 only
# for the global HD95 and for missing subjects. metrics.json holds no infinity: it is written null
# there, and tp = 0 with fp + fn > 0 tells it from NaN (no lesion on either side).
HD95_2023_PENALTY = 374.0
MATCH_THRESHOLD = 1e-6
# The 2023 script's parameters for adult glioma (BraTS-GLI).
GLI_DILATION = 3
GLI_VOLUME_THRESHOLD = 50.0

_CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)
_DILATION_18 = ndimage.generate_binary_structure(3, 2)


def connected_lesions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """26-connected components of a 3D mask: (labels 1..n, n)."""
    labels, n = ndimage.label(np.asarray(mask, dtype=bool), structure=_CONNECTIVITY_26)
    return labels, int(n)


def _overlaps(
    ref_labels: np.ndarray, pred_labels: np.ndarray, n_ref: int, n_pred: int
) -> np.ndarray:
    """(n_ref + 1, n_pred + 1) voxel counts of every (reference lesion, predicted lesion) pair; 0 =
    none."""
    code = ref_labels.astype(np.int64) * (n_pred + 1) + pred_labels
    counts = np.bincount(code.ravel(), minlength=(n_ref + 1) * (n_pred + 1))
    return counts.reshape(n_ref + 1, n_pred + 1)


def _box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    hits = ndimage.find_objects(mask.astype(np.uint8))[0]
    return tuple(
        slice(max(s.start - margin, 0), min(s.stop + margin, n))
        for s, n in zip(hits, mask.shape, strict=True)
    )


def _cropped(pred_mask, ref_mask, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """Both masks on the box around either plus ``margin`` (components and distances do not
    change)."""
    pred_mask, ref_mask = np.asarray(pred_mask, bool), np.asarray(ref_mask, bool)
    either = pred_mask | ref_mask
    if not either.any():
        return pred_mask, ref_mask
    box = _box(either, margin)
    return pred_mask[box], ref_mask[box]


def _pair_hd95(pred_mask: np.ndarray, ref_mask: np.ndarray, spacing: Sequence[float]) -> float:
    box = _box(pred_mask | ref_mask, 2)
    return hd95(pred_mask[box], ref_mask[box], spacing)


def _pair_hd95_2023(pred_mask: np.ndarray, ref_mask: np.ndarray, spacing: Sequence[float]) -> float:
    """The 2023 script's HD95 of a lesion and its matched prediction, computed as the script does:
    DeepMind's surface-distance package (surface elements weighted by their area), the larger of
    the two directed 95th percentiles (``compute_robust_hausdorff``). Both masks are non-empty.

    The package's own ``compute_surface_distances`` sorts its surface elements in a Python loop
    (seconds per region on a scattered prediction); this takes its steps and its area table and
    sorts with numpy in the same order, so the value is the same
    (tests/metrics/test_lesions.py compares them)."""
    box = _box(pred_mask | ref_mask, 2)
    ref_distances, ref_areas, pred_distances, pred_areas = _surface_elements(
        ref_mask[box].astype(bool), pred_mask[box].astype(bool), tuple(float(s) for s in spacing)
    )
    return float(
        max(
            _area_weighted_percentile(ref_distances, ref_areas, 95.0),
            _area_weighted_percentile(pred_distances, pred_areas, 95.0),
        )
    )


def _surface_elements(
    ref: np.ndarray, pred: np.ndarray, spacing: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """surface_distance.compute_surface_distances without its sort: each mask's surface elements
    (2x2x2 neighbourhood codes on the corners of the voxels, in the masks' tight box padded by one
    voxel on the far sides), their areas and their distances to the other mask's surface."""
    from scipy import ndimage
    from surface_distance import lookup_tables

    area_of_code = lookup_tables.create_table_neighbour_code_to_surface_area(spacing)
    window = _box(ref | pred, 0)
    codes, borders = [], []
    for mask in (ref, pred):
        padded = np.zeros([s.stop - s.start + 1 for s in window], np.uint8)
        padded[:-1, :-1, :-1] = mask[window]
        code = ndimage.correlate(
            padded, lookup_tables.ENCODE_NEIGHBOURHOOD_3D_KERNEL, mode="constant", cval=0
        )
        codes.append(code)
        borders.append((code != 0) & (code != 0b11111111))
    distance_to = [
        ndimage.distance_transform_edt(~border, sampling=spacing)
        if border.any()
        else np.full(border.shape, np.inf)
        for border in borders
    ]
    return (
        distance_to[1][borders[0]],
        area_of_code[codes[0]][borders[0]],
        distance_to[0][borders[1]],
        area_of_code[codes[1]][borders[1]],
    )


def _area_weighted_percentile(distances: np.ndarray, areas: np.ndarray, percent: float) -> float:
    """compute_robust_hausdorff's directed percentile: distances ordered as the package orders
    them (by distance, then area), the first whose cumulative share of the area reaches
    ``percent``; inf without surface elements."""
    if len(distances) == 0:
        return float("inf")
    order = np.lexsort((areas, distances))
    sorted_areas = areas[order]
    cumulative = np.cumsum(sorted_areas) / np.sum(sorted_areas)
    index = int(np.searchsorted(cumulative, percent / 100.0))
    return float(distances[order][min(index, len(distances) - 1)])


def official_lesionwise(
    pred_mask: np.ndarray, ref_mask: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)
) -> dict[str, float]:
    """The official package's lesion-wise scores of one region: dsc_mean, hd95_mean, tp, fp, fn.

    hd95_mean is ``inf`` when lesions exist but none matched, as in the package.
    """
    pred_mask, ref_mask = _cropped(pred_mask, ref_mask, 2)
    ref_labels, n_ref = connected_lesions(ref_mask)
    pred_labels, n_pred = connected_lesions(pred_mask)
    pairs: list[tuple[int, int]] = []
    if n_ref and n_pred:
        overlap = _overlaps(ref_labels, pred_labels, n_ref, n_pred)
        ref_size, pred_size = overlap.sum(axis=1)[1:], overlap.sum(axis=0)[1:]
        dice = 2.0 * overlap[1:, 1:] / (ref_size[:, None] + pred_size[None, :])
        cost = np.where(dice >= MATCH_THRESHOLD, 1.0 - dice, 1.0 + 1e-6)
        rows, cols = linear_sum_assignment(cost)
        pairs = [
            (int(r) + 1, int(c) + 1) for r, c in zip(rows, cols, strict=True) if cost[r, c] < 1.0
        ]
    dices, distances = [], []
    for r, p in pairs:
        ref_lesion, pred_lesion = ref_labels == r, pred_labels == p
        inter = np.count_nonzero(ref_lesion & pred_lesion)
        dices.append(2.0 * inter / (np.count_nonzero(ref_lesion) + np.count_nonzero(pred_lesion)))
        distances.append(_pair_hd95(pred_lesion, ref_lesion, spacing))
    tp = len(pairs)
    if tp:
        dsc_mean, hd95_mean = float(np.mean(dices)), float(np.mean(distances))
    elif n_ref + n_pred == 0:
        dsc_mean = hd95_mean = math.nan
    else:
        dsc_mean, hd95_mean = 0.0, math.inf
    return {
        "dsc_mean": dsc_mean,
        "hd95_mean": hd95_mean,
        "tp": tp,
        "fp": n_pred - tp,
        "fn": n_ref - tp,
    }


def merged_reference_lesions(
    ref_mask: np.ndarray, dilation: int = GLI_DILATION
) -> tuple[np.ndarray, int]:
    """The 2023 script's reference lesions: components of the dilated mask, restricted to the
    mask."""
    ref_mask = np.asarray(ref_mask, bool)
    if not ref_mask.any():
        return np.zeros(ref_mask.shape, np.int32), 0
    dilated = (
        ndimage.binary_dilation(ref_mask, structure=_DILATION_18, iterations=dilation)
        if dilation
        else ref_mask
    )
    labels, n = connected_lesions(dilated)
    labels[~ref_mask] = 0
    return labels, n


def lesionwise_2023(
    pred_mask: np.ndarray,
    ref_mask: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    dilation: int = GLI_DILATION,
    volume_threshold: float = GLI_VOLUME_THRESHOLD,
) -> dict[str, float]:
    """The 2023 script's lesion-wise scores of one region: dice, hd95, tp, fp, fn (see the module
    docstring)."""
    pred_mask, ref_mask = _cropped(pred_mask, ref_mask, dilation + 2)
    ref_labels, n_ref = merged_reference_lesions(ref_mask, dilation)
    pred_labels, _ = connected_lesions(pred_mask)
    pred_sizes = np.bincount(pred_labels.ravel())
    voxel_volume = float(np.prod([float(s) for s in spacing]))
    matched_pred: set[int] = set()
    kept_dice, kept_hd95 = [], []
    tp = fn = 0
    for lesion_id in range(1, n_ref + 1):
        lesion = ref_labels == lesion_id
        margin = dilation + 1
        box = _box(lesion, margin)
        grown = lesion[box]
        if dilation:
            grown = ndimage.binary_dilation(grown, structure=_DILATION_18, iterations=dilation)
        touching = np.unique(pred_labels[box][grown])
        touching = touching[touching != 0]
        matched_pred.update(int(t) for t in touching)
        if np.count_nonzero(lesion) * voxel_volume <= volume_threshold:
            continue
        if len(touching):
            predicted = np.isin(pred_labels, touching)
            inter = np.count_nonzero(predicted & lesion)
            kept_dice.append(
                2.0 * inter / (np.count_nonzero(lesion) + int(pred_sizes[touching].sum()))
            )
            kept_hd95.append(_pair_hd95_2023(predicted, lesion, spacing))
            tp += 1
        else:
            kept_dice.append(0.0)
            kept_hd95.append(HD95_2023_PENALTY)
            fn += 1
    fp = len(pred_sizes) - 1 - len(matched_pred)
    count = len(kept_dice) + fp
    if count == 0:
        dice, distance = 1.0, 0.0
    else:
        dice = float(np.sum(kept_dice)) / count
        distance = (float(np.sum(kept_hd95)) + HD95_2023_PENALTY * fp) / count
    return {"dice": dice, "hd95": distance, "tp": tp, "fp": fp, "fn": fn}


def lesion_dice_2023_by_min_size(
    pred_mask: np.ndarray,
    ref_mask: np.ndarray,
    min_sizes: Sequence[int],
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    dilation: int = GLI_DILATION,
    volume_threshold: float = GLI_VOLUME_THRESHOLD,
) -> list[float]:
    """``lesionwise_2023``'s Dice of ``pred_mask`` without its lesions smaller than each of
    ``min_sizes`` voxels, from one labelling of both masks (for tuning post-processing).

    Dropping whole predicted lesions changes no other lesion, so the matching is made once: each
    reference lesion's touching predictions and their overlaps, then each size keeps a subset."""
    pred_mask, ref_mask = _cropped(pred_mask, ref_mask, dilation + 2)
    ref_labels, n_ref = merged_reference_lesions(ref_mask, dilation)
    pred_labels, n_pred = connected_lesions(pred_mask)
    sizes = np.bincount(pred_labels.ravel(), minlength=n_pred + 1)
    voxel_volume = float(np.prod([float(s) for s in spacing]))
    touched = np.zeros(n_pred + 1, dtype=bool)
    scored = []  # per reference lesion kept by the volume threshold: (size, touching, overlaps)
    for lesion_id in range(1, n_ref + 1):
        lesion = ref_labels == lesion_id
        box = _box(lesion, dilation + 1)
        grown = lesion[box]
        if dilation:
            grown = ndimage.binary_dilation(grown, structure=_DILATION_18, iterations=dilation)
        touching = np.unique(pred_labels[box][grown])
        touching = touching[touching != 0]
        touched[touching] = True
        size = int(np.count_nonzero(lesion))
        if size * voxel_volume <= volume_threshold:
            continue
        overlaps = np.bincount(pred_labels[lesion], minlength=n_pred + 1)[touching]
        scored.append((size, touching, overlaps))
    out = []
    for min_size in min_sizes:
        kept = sizes >= min_size
        kept[0] = False
        total = 0.0
        for size, touching, overlaps in scored:
            hit = kept[touching]
            if hit.any():
                total += 2.0 * overlaps[hit].sum() / (size + sizes[touching][hit].sum())
        count = len(scored) + int(np.count_nonzero(kept & ~touched))
        out.append(1.0 if count == 0 else total / count)
    return out


def lesion_scores(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    conventions: Sequence[str] = CONVENTIONS,
) -> dict[str, dict[str, dict[str, float]]]:
    """Lesion-wise scores of WT, TC and ET of one patient, per convention, ready for metrics.json.

    ``{"brats2024": {"WT": {"dsc_mean", "hd95_mean", "tp", "fp", "fn"}, ...},
    "brats2023": {"WT": {"dice", "hd95", "tp", "fp", "fn"}, ...}}``; the official convention's HD95
    is infinite where lesions exist but none matched, as in the package, and NaN where no lesion
    exists on either side."""
    pred, ref = np.asarray(pred), np.asarray(ref)
    tumour = (pred > 0) | (ref > 0)
    if (
        tumour.any()
    ):  # components, dilations and distances are the same on a box with a margin around all
        box = _box(tumour, GLI_DILATION + 2)
        pred, ref = pred[box], ref[box]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for convention in conventions:
        if convention not in CONVENTIONS:
            raise ValueError(f"unknown lesion-wise convention {convention!r}")
        out[convention] = {}
        for region, labels in REGIONS.items():
            pred_mask, ref_mask = np.isin(pred, labels), np.isin(ref, labels)
            if convention == "brats2024":
                scores = official_lesionwise(pred_mask, ref_mask, spacing)
            else:
                scores = lesionwise_2023(pred_mask, ref_mask, spacing)
            out[convention][region] = scores
    return out


def _official_hd95(scores: dict[str, Any]) -> float:
    """A patient's official lesion-wise HD95, infinite again where metrics.json wrote it null."""
    value = scores.get("hd95_mean")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        no_match = scores.get("tp") == 0 and (scores.get("fp") or 0) + (scores.get("fn") or 0) > 0
        return math.inf if no_match else math.nan
    return float(value)


def summarise_lesions(per_patient: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean over patients (NaN skipped) of each convention's lesion-wise scores, and the summed
    counts.

    Reads ``patient["lesionwise"][convention][region]``; patients without it are skipped. The
    official convention's HD95 mean is infinite when any patient's is (lesions, none matched), as
    the package's mean over subjects is; ``hd95_infinite`` counts those patients.
    """
    scored = [p["lesionwise"] for p in per_patient if p.get("lesionwise")]
    summary: dict[str, dict[str, dict[str, float]]] = {}
    if not scored:
        return summary
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for convention in scored[0]:
            summary[convention] = {}
            for region in REGIONS:
                rows = [p[convention][region] for p in scored if convention in p]
                entry: dict[str, float] = {}
                for key in rows[0]:
                    values = np.array(
                        [
                            _official_hd95(r)
                            if key == "hd95_mean"
                            else (np.nan if r[key] is None else r[key])
                            for r in rows
                        ],
                        dtype=np.float64,
                    )
                    if key in ("tp", "fp", "fn"):
                        entry[key] = int(np.nansum(values))
                    else:
                        entry[f"{key}_mean" if not key.endswith("_mean") else key] = float(
                            np.nanmean(values)
                        )
                    if key == "hd95_mean":
                        entry["hd95_infinite"] = int(np.count_nonzero(np.isinf(values)))
                summary[convention][region] = entry
    return summary


def lesionwise_summary(per_patient: list[dict]) -> dict[str, Any]:
    """The metrics.json entries for the lesion-wise scores of ``per_patient``: the summary and the
    conventions."""
    summary = summarise_lesions(per_patient)
    if not summary:
        return {}
    return {
        "lesionwise": summary,
        "lesionwise_conventions": {c: CONVENTION_NAMES[c] for c in summary},
    }
