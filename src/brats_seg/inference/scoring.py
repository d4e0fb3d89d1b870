"""Per-case scoring, the one scorer that evaluate, predict and ``evaluate pred=`` share; and scoring
a folder of predicted segmentations from any tool against the reference segs of a BraTS root."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from brats_seg.atomic import write_json
from brats_seg.errors import DataError
from brats_seg.outputs import files_beside
from brats_seg.runfolder import METRICS_FILE

_PRED_SUFFIX = re.compile(r"([_-]seg|[_-]pred)?\.nii(\.gz)?$")


def score_case(
    case_id: str,
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: tuple[float, ...],
    *,
    empty_rule: str,
    lesionwise: bool,
) -> dict[str, Any]:
    """One case's ``per_patient`` entry: Dice and HD95 of WT, TC and ET (classes 0..3 on one grid)
    and, with ``lesionwise``, the lesion-wise scores."""
    from brats_seg.metrics.lesions import lesion_scores
    from brats_seg.metrics.regions import region_scores

    entry = {"case": case_id, **region_scores(pred, ref, spacing=spacing, empty_rule=empty_rule)}
    if lesionwise:
        entry["lesionwise"] = lesion_scores(pred, ref, spacing=spacing)
    return entry


def score_missing_case(
    case_id: str, ref: np.ndarray, spacing: tuple[float, ...], *, lesionwise: bool
) -> dict[str, Any]:
    """The entry of a case with no prediction: what BraTS gives it (see missing_scores);
    lesion-wise, scored as an empty prediction (every lesion missed)."""
    from brats_seg.metrics.lesions import lesion_scores

    entry: dict[str, Any] = {"case": case_id, "missing": True, **missing_scores()}
    if lesionwise:
        entry["lesionwise"] = lesion_scores(np.zeros_like(ref), ref, spacing=spacing)
    return entry


def summarise_cases(per_patient: list[dict[str, Any]], empty_rule: str) -> dict[str, Any]:
    """The metrics.json entries of per-case scores: the cases, their region means and medians, the
    empty-region rule and (when scored) the lesion-wise summary."""
    from brats_seg.metrics.lesions import lesionwise_summary
    from brats_seg.metrics.regions import summarise

    return {
        "per_patient": per_patient,
        "regions": summarise(per_patient),
        "empty_rule": empty_rule,
        **lesionwise_summary(per_patient),
    }


def missing_scores() -> dict[str, dict[str, float]]:
    """What BraTS and the brats-evaluation package give a case with no prediction: Dice 0 and
    HD95 373.13 in every region."""
    from brats_seg.data.labels import REGIONS
    from brats_seg.metrics.regions import HD95_EMPTY

    return {region: {"dice": 0.0, "hd95": HD95_EMPTY} for region in REGIONS}


def prediction_files(pred_dir: Path) -> dict[str, Path]:
    """Case id -> predicted seg under ``pred_dir`` (any depth); two files for one case are
    refused."""
    if not pred_dir.is_dir():
        raise DataError(f"{pred_dir}: no such folder of predictions")
    found: dict[str, Path] = {}
    from brats_seg.inference.probabilities import is_probabilities_file

    for path in sorted(pred_dir.rglob("*.nii*")):
        if is_probabilities_file(path.name):  # saved beside a segmentation by predict
            continue
        case_id = _PRED_SUFFIX.sub("", path.name)
        if case_id == path.name:
            continue
        if case_id in found:
            raise DataError(
                f"{pred_dir}: two predictions for case {case_id}: {found[case_id]} and {path}; "
                "keep one (or score each folder on its own)"
            )
        found[case_id] = path
    return found


def reference_and_prediction(case, pred_path: Path, rules) -> tuple[np.ndarray, np.ndarray, Any]:
    """Classes of a reference case's seg and of its prediction, both read in the case's label
    convention (``rules``, under auto the one its reference's names imply: never guessed from the
    labels a prediction happens to hold), and the reference image."""
    from brats_seg.data.labels import classes_of, label_values, resolve_convention, whole_labels
    from brats_seg.data.nifti import check_geometry, read_nifti

    raw_ref, image = read_nifti(case.seg)
    raw_pred, pred_image = read_nifti(pred_path)
    check_geometry(
        pred_path, raw_pred.shape, pred_image.affine, case.seg, raw_ref.shape, image.affine
    )
    ref_labels = whole_labels(raw_ref, str(case.seg))
    pred_labels = whole_labels(raw_pred, str(pred_path))
    values = label_values(ref_labels) | label_values(pred_labels)
    convention = resolve_convention(case.convention, values, rules, [str(case.seg), str(pred_path)])
    ref = classes_of(ref_labels, convention, rules, str(case.seg))
    return ref, classes_of(pred_labels, convention, rules, str(pred_path)), image


def score_prediction_folder(
    pred_dir: Path,
    ref_root: Path,
    out_dir: Path,
    empty_rule: str = "brats",
    allow_missing: bool = True,
    lesionwise: bool = True,
    labels: Any = None,
) -> dict[str, Any]:
    """Score every reference case; one without a prediction scores Dice 0 / HD95 373.13 and is
    listed in ``missing`` (with ``allow_missing=False``, an error before anything is written).
    ``labels``: the LabelRules of the reference segs and predictions (None: by their names)."""
    from brats_seg.data.discovery import find_cases
    from brats_seg.data.labels import LabelRules, decode_labels
    from brats_seg.data.nifti import read_nifti
    from brats_seg.inference.timing import CaseTimer
    from brats_seg.training.hardware import cpu_description

    rules = labels or LabelRules.default()
    predictions = prediction_files(pred_dir)
    references = {c.case_id: c for c in find_cases(ref_root) if c.seg is not None}
    matched = sorted(set(predictions) & set(references))
    if not matched:
        raise DataError(
            f"no case id is both predicted in {pred_dir} and has a reference seg under {ref_root}"
        )
    missing = sorted(set(references) - set(predictions))
    if missing and not allow_missing:
        raise DataError(
            f"{len(missing)} of {len(references)} reference case(s) under {ref_root} "
            f"have no prediction in {pred_dir} ({', '.join(missing)}); "
            "evaluate.allow_missing=false"
        )
    per_patient = []
    timer = CaseTimer()
    for case_id in sorted(references):
        case = references[case_id]
        with timer.case(case_id):
            if case_id in missing:
                with timer.phase("read"):
                    raw, image = read_nifti(case.seg)
                    ref = decode_labels(raw, case.convention, str(case.seg), rules)[0]
                with timer.phase("scoring"):
                    entry = score_missing_case(case_id, ref, _spacing(image), lesionwise=lesionwise)
                per_patient.append(entry)
                continue
            with timer.phase("read"):
                ref, pred, image = reference_and_prediction(case, predictions[case_id], rules)
            with timer.phase("scoring"):
                entry = score_case(
                    case_id,
                    pred,
                    ref,
                    _spacing(image),
                    empty_rule=empty_rule,
                    lesionwise=lesionwise,
                )
            per_patient.append(entry)
    metrics = {
        **summarise_cases(per_patient, empty_rule),
        "missing": missing,
        "unmatched_predictions": sorted(set(predictions) - set(references)),
        # reading and scoring only: the predictions were made elsewhere
        "cost": timer.record(cpu_description()),
    }
    with files_beside(out_dir, [METRICS_FILE], "evaluate"):
        write_json(out_dir / METRICS_FILE, metrics)
    return metrics


def _spacing(image) -> tuple[float, ...]:
    return tuple(float(s) for s in image.header.get_zooms()[:3])
