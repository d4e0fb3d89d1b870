"""Post-processing chosen for lesion-wise Dice on a run's validation patients (never its test
patients): ``brats-seg evaluate run=RUN tune_postprocess=true``.

Per region, in the order WT, TC, ET, a grid of a probability threshold (``THRESHOLDS``; 0: the
argmax) and a minimum component size (``MIN_SIZES`` voxels) is scored by the mean over the
patients of the BraTS 2023 lesion-wise Dice (metrics/lesions.py), and the best setting is kept
before the next region is tuned: a region's final mask depends only on its own settings and those
of the regions around it (see postprocess.py), so WT is chosen first, TC within the chosen WT, ET
within the chosen TC. Ties go to the less aggressive setting: the argmax before any threshold, the
smaller size first, the threshold nearest 0.5 first. Each threshold's mask is labelled once and
every size is scored from that labelling.

The choice is stored in the run folder (``postprocess.json``: the settings, every grid point's
score, the patients and checkpoint used) and ``brats-seg predict`` applies it (see predict.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from brats_seg.data.labels import REGIONS
from brats_seg.errors import ConfigError, RunError
from brats_seg.inference.postprocess import (
    MIN_SIZES as MIN_SIZE_KEYS,
)
from brats_seg.inference.postprocess import (
    THRESHOLDS as THRESHOLD_KEYS,
)
from brats_seg.inference.postprocess import (
    PostprocessSettings,
    region_mask,
)
from brats_seg.metrics.lesions import connected_lesions, lesion_dice_2023_by_min_size

MIN_SIZES: tuple[int, ...] = (0, 10, 25, 50, 100, 200, 500, 1000)
THRESHOLDS: tuple[float, ...] = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7)
METRIC = "mean lesion-wise Dice over the patients, BraTS 2023 convention (metrics/lesions.py)"
# Scores closer than this are a tie.
TIE = 1e-9


@dataclass
class TuningCase:
    case_id: str
    probs: np.ndarray  # (X, Y, Z, 4) mean softmax on the case's full grid
    truth: np.ndarray  # (X, Y, Z) classes 0..3
    spacing: tuple[float, ...]


def _aggressiveness(point: dict[str, float]) -> tuple:
    threshold = point["threshold"]
    return (threshold != 0, point["min_size"], abs(threshold - 0.5) if threshold else 0.0)


def best_point(points: list[dict[str, float]]) -> dict[str, float]:
    """The grid point of highest score; among ties, the least aggressive."""
    top = max(p["score"] for p in points)
    return min((p for p in points if p["score"] >= top - TIE), key=_aggressiveness)


def tune(
    cases: Sequence[TuningCase],
    min_sizes: Sequence[int] = MIN_SIZES,
    thresholds: Sequence[float] = THRESHOLDS,
) -> dict[str, Any]:
    """The chosen settings and every grid point's score, region by region (see the module
    docstring)."""
    if not cases:
        raise RunError("tuning post-processing needs at least one validation patient")
    argmax = [np.argmax(c.probs, axis=-1).astype(np.uint8) for c in cases]
    outer = [np.ones(c.truth.shape, dtype=bool) for c in cases]  # the chosen enclosing region
    regions: dict[str, Any] = {}
    chosen: dict[str, Any] = {}
    for region, labels in REGIONS.items():
        points = []
        refs = [np.isin(c.truth, labels) for c in cases]
        for threshold in thresholds:
            masks = [
                region_mask(c.probs, a, region, threshold) & o
                for c, a, o in zip(cases, argmax, outer, strict=True)
            ]
            per_case = [
                lesion_dice_2023_by_min_size(m, r, min_sizes, c.spacing)
                for m, r, c in zip(masks, refs, cases, strict=True)
            ]
            for i, min_size in enumerate(min_sizes):
                scores = [round(float(s[i]), 6) for s in per_case]
                points.append(
                    {
                        "threshold": float(threshold),
                        "min_size": int(min_size),
                        "score": float(np.mean(scores)),
                        "per_case": scores,
                    }
                )
        best = best_point(points)
        untouched = next(p for p in points if p["threshold"] == 0 and p["min_size"] == 0)
        regions[region] = {"chosen": best, "without": untouched["score"], "grid": points}
        chosen[MIN_SIZE_KEYS[region]] = best["min_size"]
        chosen[THRESHOLD_KEYS[region]] = best["threshold"]
        for i, (c, a, o) in enumerate(zip(cases, argmax, outer, strict=True)):
            mask = region_mask(c.probs, a, region, best["threshold"]) & o
            lesions, _ = connected_lesions(mask)
            outer[i] = mask & (np.bincount(lesions.ravel())[lesions] >= best["min_size"])
    settings = PostprocessSettings.from_cfg(chosen, "postprocess")
    return {
        "settings": settings.as_dict(),
        "metric": METRIC,
        "grid": {"min_sizes": [int(m) for m in min_sizes], "thresholds": list(thresholds)},
        "cases": [c.case_id for c in cases],
        "regions": regions,
    }


def validation_cases(run) -> list[str]:
    """The run's validation patients (one name per distinct scan), refused when there are none."""
    split = run.folder.read_split()
    val = list(split.get("val") or [])
    if not val:
        raise RunError(
            f"{run.path}: the run's split has no validation patients to tune post-processing on "
            "(train with data.split.val > 0); its test patients are never used for it"
        )
    return val


def tune_run(run, cfg, *, batch_size: int = 16) -> dict[str, Any]:
    """Tune post-processing on the validation patients of an opened run (``cfg``: its config with
    the command's overrides) and write ``postprocess.json`` into its folder."""
    from brats_seg.data.dataset import prepare_data
    from brats_seg.data.split import distinct_scans
    from brats_seg.inference.ensemble import full_grid
    from brats_seg.inference.evaluate import model_divisor
    from brats_seg.inference.slices import predict_probabilities
    from brats_seg.runfolder import now

    val = validation_cases(run)
    model = run.load_model()
    prepared = prepare_data(cfg.data)
    fingerprints = {c: prepared.case_meta(c)["fingerprint"] for c in val}
    val, _ = distinct_scans(val, fingerprints)
    tta = bool(cfg.evaluate.tta)
    cases = []
    for case_id in val:
        x, truth, meta = prepared.load_volume(case_id)
        probs = predict_probabilities(model, x, batch_size, divisor=model_divisor(cfg), tta=tta)
        probs = full_grid(
            probs, meta.get("crop_box"), meta["full_shape"], prepared.preprocess.plane
        )
        cases.append(TuningCase(case_id, probs, np.asarray(truth), tuple(meta["spacing"])))
    record = tune(cases)
    record.update(
        {
            "split": "val",
            "tta": tta,
            "run_check": run.record(),
            "created": now(),
        }
    )
    run.folder.write_postprocess(record)
    return record


def stored_choice(runs: list, wanted: bool | None = None) -> dict[str, Any] | None:
    """The tuned post-processing that ``predict`` starts from: ``{"settings", "file", "cases",
    "checkpoint", "tta", "created"}`` of the one run's postprocess.json, or None.

    ``wanted``: null uses it where there is one run and its file was tuned with the checkpoint
    used now (an ensemble has no one choice; a mismatch is noted on the run); true requires it;
    false never uses it."""
    if wanted is False:
        return None
    if len(runs) != 1:
        if wanted:
            raise ConfigError(
                f"tuned_postprocess=true: an ensemble of {len(runs)} runs has no one tuned "
                "post-processing; predict with one run, or set postprocess.* yourself"
            )
        return None
    run = runs[0]
    folder = run.folder
    record = folder.read_postprocess()
    if record is None:
        if wanted:
            raise RunError(
                f"{run.path}: no {folder.postprocess_path.name} (tuned_postprocess=true); "
                f"make it with brats-seg evaluate run={run.path} tune_postprocess=true"
            )
        return None
    settings = PostprocessSettings.from_cfg(record["settings"], str(folder.postprocess_path))
    checkpoint = (record.get("run_check") or {}).get("checkpoint")
    if checkpoint != run.checkpoint.name:
        why = (
            f"{folder.postprocess_path.name} was tuned with {checkpoint}, "
            f"not with {run.checkpoint.name}"
        )
        if wanted:
            raise RunError(f"{run.path}: {why} (tuned_postprocess=true); tune it again")
        run.notes.append(f"{why}: not used (the run's own post-processing is)")
        return None
    return {
        "settings": settings.as_dict(),
        "file": str(folder.postprocess_path.resolve()),
        "cases": list(record.get("cases") or []),
        "checkpoint": checkpoint,
        "tta": record.get("tta"),
        "created": record.get("created"),
    }
