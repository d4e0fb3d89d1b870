"""Segment new patients with a trained run: NIfTI in, NIfTI out, on the source grid and in the case's labels."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from brats_seg.atomic import write_json
from brats_seg.data.discovery import FLAIR_CHANNEL
from brats_seg.data.labels import REGIONS
from brats_seg.errors import DataError
from brats_seg.runfolder import METRICS_FILE, RunFolder

log = logging.getLogger(__name__)


def input_cases(path: Path):
    """One case folder, or every case under a root."""
    from brats_seg.data.discovery import find_case, find_cases

    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    try:
        return [find_case(path)]
    except DataError:
        return find_cases(path)


def output_path(case, out_dir: Path) -> Path:
    """Where a case's predicted segmentation goes: ``<case>_seg.nii.gz``, or ``<case>-seg.nii.gz`` for 2023 names."""
    from brats_seg.data.discovery import file_name

    return out_dir / file_name(case.case_id, "seg", case.convention)


def check_outputs(cases, out_dir: Path) -> None:
    """Refuse, before anything is written, an output folder where a prediction would replace an input file."""
    inputs = {p.resolve() for case in cases for p in case.files}
    for case in cases:
        target = output_path(case, out_dir).resolve()
        if target in inputs:
            raise DataError(f"output={out_dir}: writing {target.name} there would overwrite the input file {target}; "
                            "choose another output folder")


def check_slice_shape(case_id: str, x: np.ndarray, model, run_dir: Path) -> None:
    expected = tuple(int(d) for d in model.input_shape[1:])
    got = tuple(int(d) for d in x.shape[1:])
    if got != expected:
        fmt = lambda s: "x".join(map(str, s))  # noqa: E731
        raise DataError(f"{case_id}: its preprocessed slices are {fmt(got)} (HxWxchannels) but the model of {run_dir} "
                        f"was trained on {fmt(expected)}; predict cases of the size the run was trained on")


def write_segmentation(classes_xyz: np.ndarray, loaded, out_dir: Path) -> Path:
    """Write a class map as a uint8 NIfTI with the source image's affine and header, in the case's labels."""
    from brats_seg.data.labels import to_convention
    from brats_seg.data.nifti import write_nifti

    labels = to_convention(classes_xyz, loaded.convention).astype(np.uint8)
    return write_nifti(output_path(loaded, out_dir), labels, loaded.affine, header=loaded.header)


def predict_cases(run_dir: Path, input_path: Path, out_dir: Path, *, batch_size: int = 16, montage_slices: int = 6,
                  empty_rule: str = "brats") -> dict[str, Any]:
    """Predict every case under ``input_path``; score those that have a segmentation."""
    from tqdm import tqdm

    from brats_seg.data.nifti import load_case
    from brats_seg.data.preprocess import preprocess_case, restore_prediction
    from brats_seg.inference.slices import predict_slices
    from brats_seg.metrics.regions import region_scores, summarise
    from brats_seg.viz import plots

    run = RunFolder(run_dir)
    preprocess_cfg = run.read_config().data.preprocess
    cases = input_cases(input_path)
    check_outputs(cases, out_dir)
    model = run.load_best_model()
    out_dir.mkdir(parents=True, exist_ok=True)
    per_patient = []
    for case in tqdm(cases, desc="predict", unit="case"):
        loaded = load_case(case)
        prepared = preprocess_case(loaded, preprocess_cfg)
        check_slice_shape(case.case_id, prepared.x, model, run_dir)
        pred = predict_slices(model, prepared.x, batch_size)
        classes = restore_prediction(pred, prepared.crop_box, prepared.full_shape)
        path = write_segmentation(classes, loaded, out_dir)
        if montage_slices:
            _montage(plots, prepared.x, pred, montage_slices, out_dir / f"{case.case_id}_overlay.png")
        line = f"{case.case_id}: wrote {path}"
        if loaded.seg is not None:
            scores = region_scores(classes, loaded.seg, spacing=loaded.spacing, empty_rule=empty_rule)
            per_patient.append({"case": case.case_id, **scores})
            line += "; " + ", ".join(f"{r} Dice {scores[r]['dice']:.4f} HD95 {scores[r]['hd95']:.2f}"
                                      for r in REGIONS)
        tqdm.write(line)
    result: dict[str, Any] = {"cases": [c.case_id for c in cases], "output": str(out_dir)}
    if per_patient:
        metrics = {"per_patient": per_patient, "regions": summarise(per_patient), "empty_rule": empty_rule}
        write_json(out_dir / METRICS_FILE, metrics)
        result["metrics"] = metrics
    return result


def _montage(plots, x: np.ndarray, pred: np.ndarray, n: int, out: Path) -> None:
    areas = (pred > 0).reshape(pred.shape[0], -1).sum(axis=1)
    order = [int(z) for z in np.argsort(areas)[::-1][:n] if areas[z] > 0] or [int(pred.shape[0] // 2)]
    order.sort()
    plots.montage([x[z, ..., FLAIR_CHANNEL] for z in order], [pred[z] for z in order],
                  [f"slice {z}: {int(areas[z])} px" for z in order], out)
