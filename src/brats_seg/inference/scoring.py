"""Score a folder of predicted segmentations from any tool against the reference segs of a BraTS
root."""

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


def _prediction_files(pred_dir: Path) -> dict[str, Path]:
    if not pred_dir.is_dir():
        raise DataError(f"{pred_dir}: no such folder of predictions")
    found = {}
    for path in sorted(pred_dir.rglob("*.nii*")):
        case_id = _PRED_SUFFIX.sub("", path.name)
        if case_id != path.name:
            found[case_id] = path
    return found


def prediction_classes(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Classes 0..3 from a predicted label map in either convention (ET as 4 up to 2021, as 3 from
    2023), and the file's affine."""
    from brats_seg.data.labels import labels_to_classes
    from brats_seg.data.nifti import read_nifti

    labels, image = read_nifti(path)
    labels = np.rint(np.asarray(labels, dtype=np.float64)).astype(np.int64)
    values = set(np.unique(labels).tolist())
    if {3, 4} <= values:
        raise DataError(f"{path}: has both labels 3 and 4; cannot tell its label convention")
    convention = "brats2023" if 3 in values else "brats2021"
    return labels_to_classes(labels, convention, str(path)), np.asarray(image.affine)


def missing_scores() -> dict[str, dict[str, float]]:
    """What BraTS and the brats-evaluation package give a case with no prediction: Dice 0 and
    HD95 373.13 in every region."""
    from brats_seg.data.labels import REGIONS
    from brats_seg.metrics.regions import HD95_EMPTY

    return {region: {"dice": 0.0, "hd95": HD95_EMPTY} for region in REGIONS}


def score_prediction_folder(
    pred_dir: Path,
    ref_root: Path,
    out_dir: Path,
    empty_rule: str = "brats",
    allow_missing: bool = True,
    lesionwise: bool = True,
) -> dict[str, Any]:
    """Score every reference case; one without a prediction scores Dice 0 / HD95 373.13 and is
    listed in ``missing`` (with ``allow_missing=False``, an error before anything is written)."""
    from brats_seg.data.discovery import find_cases
    from brats_seg.data.labels import labels_to_classes
    from brats_seg.data.nifti import check_geometry, read_nifti
    from brats_seg.metrics.lesions import lesion_scores, lesionwise_summary
    from brats_seg.metrics.regions import region_scores, summarise

    predictions = _prediction_files(pred_dir)
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
    for case_id in sorted(references):
        if case_id in missing:
            per_patient.append({"case": case_id, "missing": True, **missing_scores()})
            if lesionwise:  # scored as an empty prediction: every lesion missed
                case = references[case_id]
                labels, image = read_nifti(case.seg)
                ref = labels_to_classes(labels, case.convention, str(case.seg))
                spacing = tuple(float(s) for s in image.header.get_zooms()[:3])
                per_patient[-1]["lesionwise"] = lesion_scores(
                    np.zeros_like(ref), ref, spacing=spacing
                )
            continue
        case = references[case_id]
        labels, image = read_nifti(case.seg)
        ref = labels_to_classes(labels, case.convention, str(case.seg))
        spacing = tuple(float(s) for s in image.header.get_zooms()[:3])
        pred, pred_affine = prediction_classes(predictions[case_id])
        check_geometry(
            predictions[case_id], pred.shape, pred_affine, case.seg, ref.shape, image.affine
        )
        per_patient.append(
            {"case": case_id, **region_scores(pred, ref, spacing=spacing, empty_rule=empty_rule)}
        )
        if lesionwise:
            per_patient[-1]["lesionwise"] = lesion_scores(pred, ref, spacing=spacing)
    metrics = {
        "per_patient": per_patient,
        "regions": summarise(per_patient),
        "empty_rule": empty_rule,
        "missing": missing,
        "unmatched_predictions": sorted(set(predictions) - set(references)),
        **lesionwise_summary(per_patient),
    }
    with files_beside(out_dir, [METRICS_FILE], "evaluate"):
        write_json(out_dir / METRICS_FILE, metrics)
    return metrics
