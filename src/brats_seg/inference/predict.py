"""Segment new patients with a trained run: NIfTI in, NIfTI out, on the source grid and in the
case's labels."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from brats_seg.atomic import write_json
from brats_seg.config_schema import PredictNaming, choices
from brats_seg.data.discovery import FLAIR_CHANNEL
from brats_seg.data.labels import REGIONS
from brats_seg.errors import ConfigError, DataError
from brats_seg.outputs import check_output_dir, staged_output
from brats_seg.runfolder import METRICS_FILE, open_runs

log = logging.getLogger(__name__)

# Beside the predictions: which runs, whether TTA, which post-processing.
INFERENCE_FILE = "inference.json"


def input_cases(path: Path):
    """One case folder, or every case under a root."""
    from brats_seg.data.discovery import find_case, find_cases

    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    try:
        return [find_case(path)]
    except DataError:
        return find_cases(path)


NAMINGS = choices(PredictNaming)  # declared in the config schema


def output_path(case, out_dir: Path, naming: str = "brats") -> Path:
    """Where a case's predicted segmentation goes. ``brats``: ``<case>_seg.nii.gz``, or
    ``<case>-seg.nii.gz`` for 2023 names; ``submission``: ``<case-id>.nii.gz``, the name BraTS
    submissions and brats-evaluate expect."""
    from brats_seg.data.discovery import file_name

    if naming == "submission":
        return out_dir / f"{case.case_id}.nii.gz"
    if naming != "brats":
        raise ConfigError(f"naming must be one of {', '.join(NAMINGS)}, got {naming!r}")
    return out_dir / file_name(case.case_id, "seg", case.convention)


def check_outputs(cases, out_dir: Path, naming: str = "brats") -> None:
    """Refuse, before anything is written, an output folder where a prediction would replace an
    input file."""
    inputs = {p.resolve() for case in cases for p in case.files}
    for case in cases:
        target = output_path(case, out_dir, naming).resolve()
        if target in inputs:
            raise DataError(
                f"output={out_dir}: writing {target.name} there would overwrite the input file "
                f"{target}; choose another output folder"
            )


def write_segmentation(
    classes_xyz: np.ndarray, loaded, out_dir: Path, naming: str = "brats"
) -> Path:
    """Write a class map as a uint8 NIfTI with the source image's affine and header, in the case's
    labels."""
    from brats_seg.data.labels import to_convention
    from brats_seg.data.nifti import write_nifti

    labels = to_convention(classes_xyz, loaded.label_convention).astype(np.uint8)
    return write_nifti(
        output_path(loaded, out_dir, naming), labels, loaded.affine, header=loaded.header
    )


def inference_settings(
    members, tta: Any = None, postprocess: Any = None, tuned: dict | None = None
) -> tuple[bool, Any]:
    """TTA and post-processing for predict: what is given, else the tuned post-processing
    ``tuned`` (settings from a run's postprocess.json), else the (first) run's own ``evaluate``
    settings."""
    from brats_seg.config_schema import run_setting, to_plain
    from brats_seg.inference.postprocess import OPTIONS, PostprocessSettings

    own = to_plain(members[0].cfg.evaluate)
    base = tuned if tuned is not None else own["postprocess"]
    given = to_plain(postprocess) or {}
    chosen = {key: run_setting(given.get(key), base.get(key)) for key in OPTIONS}
    return run_setting(tta, own["tta"]), PostprocessSettings.from_cfg(chosen, "postprocess")


def predict_cases(
    run_spec: Any,
    input_path: Path | None,
    out_dir: Path,
    *,
    cases: list | None = None,
    batch_size: int = 16,
    montage_slices: int = 6,
    empty_rule: str = "brats",
    tta: Any = None,
    postprocess: Any = None,
    naming: str = "brats",
    lesionwise: bool = True,
    brain_box: bool = False,
    calibrated: bool = False,
    shown_dir: Path | None = None,
    save_probabilities: bool = False,
    allow_incomplete: bool = False,
    use_last_checkpoint: bool = False,
    tuned_postprocess: bool | None = None,
    backend: Any = None,
) -> dict[str, Any]:
    """Predict every case under ``input_path`` with one run or an ensemble; score those that have a
    segmentation.

    ``run_spec``: a run folder, a list of them or a sweep folder (see ensemble.py). ``cases``: the
    CaseFiles to predict, instead of those under ``input_path``. What was used
    (runs, TTA, post-processing) is written to ``inference.json`` and into ``metrics.json``. The
    output folder is written whole: it is new, empty or an earlier prediction, which it replaces
    (see outputs.py), and holds the old result or the new one, never a mix.
    ``brain_box``: a model of fixed size predicts only the brain's box too (rebuilt fully
    convolutional, same weights); false (the default) gives it the slices it was trained on.
    ``tuned_postprocess``: use the run's tuned post-processing (postprocess.json, see
    postprocess_tuning.py): null where one run has it, true requires it, false never.
    ``shown_dir``: the folder named in the progress lines when ``out_dir`` is a staging folder
    that will be renamed to it.
    ``calibrated``: each run's softmax tempered by the temperature it stored (refused for a run
    without one); ``save_probabilities``: the averaged softmax written beside each segmentation
    (probabilities.py).
    ``backend``: the runtime of the forward pass (null: the run's own; see backends.py).
    """
    from tqdm import tqdm

    from brats_seg.data.labels import LabelRules
    from brats_seg.data.nifti import load_case
    from brats_seg.data.preprocess import on_cached_grid
    from brats_seg.inference.backends import backend_name
    from brats_seg.inference.calibration import run_temperature
    from brats_seg.inference.ensemble import ensemble_probabilities, load_members, resolve_runs
    from brats_seg.inference.postprocess import classes_from_probabilities
    from brats_seg.inference.postprocess import postprocess as apply_postprocess
    from brats_seg.inference.postprocess_tuning import stored_choice
    from brats_seg.inference.probabilities import write_probabilities
    from brats_seg.inference.scoring import score_case, summarise_cases
    from brats_seg.inference.timing import CaseTimer
    from brats_seg.training.hardware import device_description
    from brats_seg.viz import plots

    run_dirs = resolve_runs(run_spec)
    runs = open_runs(
        run_dirs, allow_incomplete=allow_incomplete, use_last_checkpoint=use_last_checkpoint
    )
    temperatures = None
    if calibrated:  # checked before any model is loaded
        from brats_seg.config_schema import run_setting

        effective_tta = run_setting(tta, bool(runs[0].cfg.evaluate.tta))
        temperatures = [run_temperature(run, tta=effective_tta) for run in runs]
    cases = input_cases(input_path) if cases is None else list(cases)
    check_outputs(cases, out_dir, naming)
    check_output_dir(out_dir, "predict", "output")
    tuned = stored_choice(runs, tuned_postprocess)
    members = load_members(runs, any_size=brain_box, backend=backend)
    labels = LabelRules.from_cfg(members[0].cfg.data.labels)
    tta, post = inference_settings(members, tta, postprocess, tuned and tuned["settings"])
    # Every case is read once before any is predicted: a broken one stops the command before the
    # long part, and the output folder is only ever written whole (below).
    check_start = time.perf_counter()
    for case in tqdm(cases, desc="check input", unit="case"):
        load_case(case, labels)
    check_seconds = time.perf_counter() - check_start
    record = {
        "runs": [str(Path(r).resolve()) for r in run_dirs],
        "tta": tta,
        "postprocess": post.as_dict(),
        # the tuned choice the post-processing started from (null: the run's own settings)
        "postprocess_tuned": tuned and {k: v for k, v in tuned.items() if k != "settings"},
        "brain_box": bool(brain_box),
        "backend": [backend_name(member.model) for member in members],
        # each run's status and checkpoint, and what was allowed (allow_incomplete, last.keras)
        "run_checks": [run.record() for run in runs],
    }
    if calibrated:  # each run's stored temperature, in the order of runs
        record["temperatures"] = temperatures
    per_patient, written, probability_files = [], {}, {}
    timer = CaseTimer()
    with staged_output(out_dir, "predict", "output") as staging:
        for case in tqdm(cases, desc="predict", unit="case"):
            with timer.case(case.case_id):
                with timer.phase("read"):
                    loaded = load_case(case, labels)
                with timer.phase("model"):  # every member and TTA pass, back on the source grid
                    probs, prepared = ensemble_probabilities(
                        members, loaded, batch_size=batch_size, tta=tta, temperatures=temperatures
                    )
                    classes = classes_from_probabilities(probs, post)
                    if not save_probabilities:
                        del probs
                if prepared.cut_brain:
                    tqdm.write(
                        f"warning: {case.case_id}: the crop box {list(prepared.crop_box)} cuts "
                        f"{prepared.cut_brain} brain voxel(s), predicted as background"
                    )
                if post.enabled:
                    with timer.phase("postprocess"):
                        classes = apply_postprocess(classes, post)
                with timer.phase("write"):
                    path = write_segmentation(classes, loaded, staging, naming)
                    written[case.case_id] = path.name
                    if save_probabilities:
                        saved = write_probabilities(probs, loaded, staging)
                        probability_files[case.case_id] = saved.name
                        del probs
                    if montage_slices:
                        pred = on_cached_grid(classes, prepared.crop_box, prepared.plane)
                        overlay = staging / f"{case.case_id}_overlay.png"
                        _montage(plots, prepared.x, pred, montage_slices, overlay)
                line = f"{case.case_id}: wrote {(shown_dir or out_dir) / path.name}"
                if loaded.seg is not None:
                    with timer.phase("scoring"):
                        scores = score_case(
                            case.case_id,
                            classes,
                            loaded.seg,
                            loaded.spacing,
                            empty_rule=empty_rule,
                            lesionwise=lesionwise,
                        )
                    per_patient.append(scores)
                    line += "; " + ", ".join(
                        f"{r} Dice {scores[r]['dice']:.4f} HD95 {scores[r]['hd95']:.2f}"
                        for r in REGIONS
                    )
                tqdm.write(line)
        cost = timer.record(device_description())
        # Every case is read once more, up front, to check it (above): not in any case's seconds.
        cost["check_input_seconds"] = round(check_seconds, 4)
        record["cost"] = cost
        record["predictions"] = written  # what the folder holds, case by case
        if save_probabilities:
            record["probabilities"] = probability_files
        write_json(staging / INFERENCE_FILE, record)
        result: dict[str, Any] = {
            "cases": [c.case_id for c in cases],
            "output": str(out_dir),
            "inference": record,
        }
        if per_patient:
            metrics = {
                **summarise_cases(per_patient, empty_rule),
                "inference": record,
                "cost": cost,
            }
            write_json(staging / METRICS_FILE, metrics)
            result["metrics"] = metrics
    return result


def _montage(plots, x: np.ndarray, pred: np.ndarray, n: int, out: Path) -> None:
    areas = (pred > 0).reshape(pred.shape[0], -1).sum(axis=1)
    order = [int(z) for z in np.argsort(areas)[::-1][:n] if areas[z] > 0] or [
        int(pred.shape[0] // 2)
    ]
    order.sort()
    plots.montage(
        [x[z, ..., FLAIR_CHANNEL] for z in order],
        [pred[z] for z in order],
        [f"slice {z}: {int(areas[z])} px" for z in order],
        out,
    )
