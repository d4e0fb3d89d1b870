"""Evaluate a trained model on its run's held-out test patients.

Two views, as the study and the BraTS challenge report them:
- the study's pooled metrics: every pixel of the test patients' selected slices in one 4x4 confusion
  matrix;
- BraTS region metrics per patient: all axial slices predicted, the volume rebuilt on the source
  grid, Dice and HD95 for WT, TC and ET.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from brats_seg.atomic import write_json, write_text
from brats_seg.data.discovery import FLAIR_CHANNEL
from brats_seg.data.labels import CLASS_NAMES, NUM_CLASSES
from brats_seg.data.preprocess import on_cached_grid, restore_prediction
from brats_seg.data.split import distinct_scans
from brats_seg.errors import RunError
from brats_seg.inference.backends import INT8, backend_name, run_backend
from brats_seg.inference.calibration import brain_voxels, temper
from brats_seg.inference.postprocess import PostprocessSettings, classes_from_probabilities
from brats_seg.inference.postprocess import postprocess as apply_postprocess
from brats_seg.inference.scoring import score_case, summarise_cases
from brats_seg.inference.slices import predict_probabilities
from brats_seg.inference.timing import CaseTimer
from brats_seg.metrics.calibration import ECE_BINS, ReliabilityTable
from brats_seg.metrics.confusion import (
    METRIC_NAMES,
    ConfusionAccumulator,
    collapse_note,
    per_class_metrics,
)
from brats_seg.metrics.report import metrics_markdown
from brats_seg.runfolder import (
    METRICS_FILE,
    METRICS_MD_FILE,
    OpenedRun,
    RunFolder,
    open_run,
    result_config,
)
from brats_seg.training.hardware import device_description

log = logging.getLogger(__name__)

# In the run's plots/: the reliability diagram of the test patients, before and after tempering.
RELIABILITY_PLOT = "reliability.png"


def model_divisor(cfg) -> int:
    """What a run's model needs its input sides divisible by (from the run's model config)."""
    from brats_seg.models.registry import divisor

    return divisor(cfg.model)


def evaluate_model(
    model,
    prepared,
    case_ids: list[str],
    *,
    empty_rule: str = "brats",
    batch_size: int = 16,
    n_overlays: int = 5,
    divisor: int = 1,
    tta: bool,
    postprocess: Any = None,
    lesionwise: bool = True,
    other_planes: list[tuple[list, Any, int]] = (),
    temperature: float | None = None,
) -> tuple[dict[str, Any], list[tuple]]:
    """Metrics for ``case_ids`` and the slices with the most tumour, for overlays.

    A scan present twice among ``case_ids`` (identical images under two names) is scored once, in
    the per-patient means and in the pooled matrix alike; ``duplicates`` names the dropped copies.
    ``model`` may be a list of models (an ensemble over one preprocessing: their softmax is
    averaged). ``other_planes``: ``(models, prepared, divisor)`` of ensemble members that slice
    the same cases in other planes; every member's softmax is then averaged in volume space.
    ``tta`` and ``postprocess`` (see slices.py and postprocess.py) are applied and recorded in the
    metrics. ``temperature`` (one model, one plane): the expected calibration error of the brain
    voxels before and after tempering is added under ``calibration`` (see calibration.py).
    """
    post = PostprocessSettings.from_cfg(postprocess, "evaluate.postprocess")
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    confusion = ConfusionAccumulator(NUM_CLASSES)
    per_patient = []
    candidates: list[
        list[tuple]
    ] = []  # per patient: (tumour pixels, case, z, image, truth, prediction)
    fingerprints = {c: prepared.case_meta(c)["fingerprint"] for c in case_ids}
    scored, duplicates = distinct_scans(list(case_ids), fingerprints)
    for case_id in duplicates:
        log.warning(
            "%s holds the same images as %s: scored once, as %s",
            case_id,
            duplicates[case_id],
            duplicates[case_id],
        )
    reliability = None
    if temperature is not None:
        if len(models) > 1 or other_planes:
            raise RunError("calibration is fitted and reported for one run, not an ensemble")
        reliability = (ReliabilityTable(), ReliabilityTable())  # before, after tempering
    timer = CaseTimer()
    for case_id in scored:
        with timer.case(case_id):
            with timer.phase("read"):
                x, y_full, meta = prepared.load_volume(case_id)
            plane = prepared.preprocess.plane
            with timer.phase("model"):  # every TTA pass, member and plane, and the argmax
                probs = sum(
                    predict_probabilities(m, x, batch_size, divisor=divisor, tta=tta)
                    for m in models
                )
                if other_planes:
                    pred_full = _planes_classes(
                        probs,
                        len(models),
                        meta,
                        plane,
                        other_planes,
                        case_id,
                        batch_size,
                        tta,
                        post,
                    )
                    pred = on_cached_grid(pred_full, meta.get("crop_box"), plane)
                else:  # the argmax, or the region thresholds of the mean softmax
                    pred = classes_from_probabilities(probs / len(models), post)
                    pred_full = restore_prediction(
                        pred, meta.get("crop_box"), meta["full_shape"], plane
                    )
            if reliability is not None:
                with timer.phase("calibration"):
                    truth = on_cached_grid(y_full, meta.get("crop_box"), plane)
                    voxel_probs, voxel_truth = brain_voxels(probs, x, truth)
                    reliability[0].add(voxel_probs, voxel_truth)
                    reliability[1].add(temper(voxel_probs, temperature), voxel_truth)
            del probs
            if post.enabled:
                with timer.phase("postprocess"):
                    pred_full = apply_postprocess(pred_full, post)
                    pred = on_cached_grid(pred_full, meta.get("crop_box"), plane)
            with timer.phase("scoring"):
                selected = np.asarray(meta["selected"], dtype=int)
                if len(selected):
                    _, y_sel = prepared.read_slices(case_id)
                    confusion.add(np.asarray(y_sel), pred[selected])
                scores = score_case(
                    case_id,
                    pred_full,
                    y_full,
                    tuple(meta["spacing"]),
                    empty_rule=empty_rule,
                    lesionwise=lesionwise,
                )
            per_patient.append(scores)
            log.info(
                "%s: WT Dice %.4f, TC Dice %.4f, ET Dice %.4f",
                case_id,
                scores["WT"]["dice"],
                scores["TC"]["dice"],
                scores["ET"]["dice"],
            )
            candidates.append(
                _tumour_slice_candidates(n_overlays, case_id, x, pred, y_full, meta, plane)
            )
    cm = confusion.matrix
    per_class = per_class_metrics(cm)
    if per_class["never_predicted"]:
        log.warning("%s", collapse_note(per_class["never_predicted"]))
    metrics = {
        "per_class": {"labels": list(CLASS_NAMES), **{m: per_class[m] for m in METRIC_NAMES}},
        "col_ave": per_class["col_ave"],
        "col_ave_tumour": per_class["col_ave_tumour"],
        "col_ave_study": per_class["col_ave_study"],
        "never_predicted": per_class["never_predicted"],
        "collapsed": collapse_note(per_class["never_predicted"]),
        **summarise_cases(per_patient, empty_rule),
        "confusion_matrix": np.asarray(cm).tolist(),
        "test_cases": list(case_ids),
        "duplicates": duplicates,
        "test_pixels": int(np.asarray(cm).sum()),
        "inference": {
            "models": len(models),
            "tta": bool(tta),
            "postprocess": post.as_dict(),
            "backend": backend_name(models[0]),
        },
        "cost": timer.record(device_description()),
    }
    if reliability is not None:
        before, after = (table.as_dict() for table in reliability)
        metrics["calibration"] = {
            "temperature": float(temperature),
            "ece_before": before["ece"],
            "ece_after": after["ece"],
            "binning": (
                f"{ECE_BINS} equal-width bins of top-class confidence over the brain voxels "
                "(any input channel non-zero) of the test patients"
            ),
            "before": before,
            "after": after,
        }
    return metrics, _pick_overlays(candidates, n_overlays)


def _planes_classes(
    probs, members, meta, plane, other_planes, case_id, batch_size, tta, post
) -> np.ndarray:
    """(X, Y, Z) classes of the softmax ``probs`` of one plane's slices (summed over ``members``
    models) plus that of every member in ``other_planes``, averaged in volume space (the argmax,
    or the region thresholds of the PostprocessSettings ``post``)."""
    from brats_seg.inference.ensemble import full_grid

    total = full_grid(probs, meta.get("crop_box"), meta["full_shape"], plane)
    for models, prepared, divisor in other_planes:
        members += len(models)
        x, _, other = prepared.load_volume(case_id)
        for m in models:
            probs = predict_probabilities(m, x, batch_size, divisor=divisor, tta=tta)
            total = total + full_grid(
                probs, other.get("crop_box"), other["full_shape"], prepared.preprocess.plane
            )
    return classes_from_probabilities(total / members, post)


def _tumour_slice_candidates(
    n: int, case_id: str, x, pred, y_full, meta, plane: str = "axial"
) -> list[tuple]:
    """Up to ``n`` of a patient's slices with the most tumour, at least a few slices apart, best
    first."""
    if n <= 0 or y_full is None:
        return []
    truth_slices = on_cached_grid(y_full, meta.get("crop_box"), plane)
    areas = (truth_slices > 0).reshape(truth_slices.shape[0], -1).sum(axis=1)
    gap = max(1, truth_slices.shape[0] // 20)
    chosen: list[int] = []
    for z in np.argsort(areas, kind="stable")[::-1]:
        if len(chosen) == n or areas[z] == 0:
            break
        if all(abs(int(z) - c) >= gap for c in chosen):
            chosen.append(int(z))
    return [
        (
            int(areas[z]),
            case_id,
            z,
            np.array(x[z, ..., FLAIR_CHANNEL]),
            np.array(truth_slices[z]),
            np.array(pred[z]),
        )
        for z in chosen
    ]


def _pick_overlays(candidates: list[list[tuple]], n: int) -> list[tuple]:
    """``n`` slices spread over patients: every patient's best slice first, then their second best,
    and so on."""
    ranked = [
        (rank, -item[0], i, item)
        for i, items in enumerate(candidates)
        for rank, item in enumerate(items)
    ]
    return [item for *_, item in sorted(ranked, key=lambda r: r[:3])[:n]]


def write_evaluation(
    run_dir: Path, metrics: dict[str, Any], overlays: list[tuple], title: str = ""
) -> None:
    """metrics.json, metrics.md and the plots; each file written atomically."""
    from brats_seg.viz import plots

    plot_dir = RunFolder(run_dir).plot_dir
    plots.confusion_matrix(
        np.asarray(metrics["confusion_matrix"]),
        list(CLASS_NAMES),
        plot_dir / "confusion_matrix.png",
    )
    plots.learning_curves(RunFolder(run_dir).history_path, plot_dir / "learning_curves.png")
    for i, (area, case_id, z, image, truth, pred) in enumerate(overlays, start=1):
        plots.overlay(
            image,
            truth,
            pred,
            plot_dir / f"overlay_{i}.png",
            title=f"{case_id}, slice {z} ({area} tumour px)",
        )
    for stale in plot_dir.glob(
        "overlay_*.png"
    ):  # left by an earlier evaluation that drew more of them
        if stale.stem.split("_")[-1].isdigit() and int(stale.stem.split("_")[-1]) > len(overlays):
            stale.unlink()
    reliability_png = plot_dir / RELIABILITY_PLOT
    if metrics.get("calibration"):
        from brats_seg.viz.calibration import reliability_diagram

        reliability_diagram(metrics["calibration"], reliability_png)
    else:  # drawn by an earlier evaluation that was calibrated
        reliability_png.unlink(missing_ok=True)
    write_text(run_dir / METRICS_MD_FILE, metrics_markdown(metrics, title))
    write_json(run_dir / METRICS_FILE, metrics)


def evaluate_run(
    run: str | Path | OpenedRun,
    cfg=None,
    *,
    allow_incomplete: bool = False,
    use_last_checkpoint: bool = False,
) -> dict[str, Any]:
    """Evaluate a run's model on its test patients and write the results into its folder.

    ``run``: a run folder, opened here with runfolder.open_run (which refuses a run that is not
    completed, an edited config.yaml or a damaged checkpoint unless the options allow it), or one
    already opened. ``cfg``: the run's config with the command's overrides (default: its own).
    """
    from brats_seg.data.dataset import prepare_data

    if not isinstance(run, OpenedRun):
        run = open_run(
            run, allow_incomplete=allow_incomplete, use_last_checkpoint=use_last_checkpoint
        )
    run_dir, folder = run.path, run.folder
    cfg = run.cfg if cfg is None else cfg
    split = folder.read_split()
    if not split.get("test"):
        raise RunError(f"{run_dir}: the split has no test patients")
    ev = cfg.evaluate
    model = run_backend(run.load_model(), cfg, run.checkpoint)
    prepared = prepare_data(cfg.data)
    fit = None
    if ev.get("calibration"):
        from brats_seg.inference.calibration import calibrate_run

        fit = calibrate_run(folder, model, prepared, split, cfg, run.checkpoint)
    metrics, overlays = evaluate_model(
        model,
        prepared,
        split["test"],
        empty_rule=ev.empty_rule,
        batch_size=ev.batch_size,
        n_overlays=ev.overlays,
        lesionwise=ev.lesionwise,
        divisor=model_divisor(cfg),
        tta=ev.tta,
        postprocess=ev.postprocess,
        temperature=fit["temperature"] if fit else None,
    )
    if fit:
        metrics["calibration"]["fit"] = fit
    if backend_name(model) == INT8:
        metrics["int8_check"] = _int8_check(model, run, prepared, split["test"], cfg, metrics)
    metrics["run_check"] = run.record()
    note = "; ".join(run.notes) or None
    if note:
        metrics["checkpoint_note"] = note
    title = cfg.get("experiment_id") or run_dir.name
    write_evaluation(run_dir, metrics, overlays, title=str(title))
    if folder.status_path.exists():
        folder.update(evaluated_checkpoint=run.checkpoint.name, checkpoint_note=note)
    return metrics


def _int8_check(model, run: OpenedRun, prepared, cases, cfg, int8_metrics) -> dict[str, Any]:
    """The same evaluation with the Keras model, beside the int8 one: the Dice check that lets
    backend=auto use int8 for this checkpoint (backends.record_int8_check)."""
    from brats_seg.inference.backends import record_int8_check

    ev = cfg.evaluate
    keras_metrics, _ = evaluate_model(
        model.keras_model,
        prepared,
        cases,
        empty_rule=ev.empty_rule,
        batch_size=ev.batch_size,
        n_overlays=0,
        lesionwise=False,
        divisor=model_divisor(cfg),
        tta=ev.tta,
        postprocess=ev.postprocess,
    )
    check = record_int8_check(model, run.checkpoint, keras_metrics, int8_metrics)
    log.info(
        "int8 against keras, mean Dice lower by %s (auto may use int8: %s)",
        check["drop"],
        check["passed"],
    )
    return check


def evaluate_ensemble(
    runs: list[OpenedRun], out: Path, cfgs: list, *, batch_size: int = 16
) -> dict[str, Any]:
    """Evaluate the averaged softmax of several runs on their common test patients; write into
    ``out``.

    The runs must share their data settings (all but the plane and the training-only augment,
    sampling and patch) and their test patients (seeds, models or planes of one split); folds of a
    cross-validation do not, and are scored on new patients with ``brats-seg predict`` instead.
    Runs of several planes are averaged in volume space; the pooled confusion matrix is taken on
    the first run's plane. TTA, post-processing
    and the empty-region rule are the first run's (``cfgs`` carry any overrides).
    """
    import math

    from brats_seg.config_schema import to_plain
    from brats_seg.data.dataset import prepare_data
    from brats_seg.inference.ensemble import shared_data_settings

    run_dirs = [run.path for run in runs]
    tests = [sorted(run.folder.read_split().get("test") or []) for run in runs]
    if not tests[0]:
        raise RunError(f"{run_dirs[0]}: the split has no test patients")
    for run_dir, test in zip(run_dirs[1:], tests[1:], strict=True):
        if test != tests[0]:
            raise RunError(
                f"{run_dir}: its test patients differ from those of {run_dirs[0]}; "
                "an ensemble of runs is evaluated on common test patients "
                "(score other runs with brats-seg predict)"
            )
    data = [result_config({"data": to_plain(c.data)})["data"] for c in cfgs]
    for run_dir, other in zip(run_dirs[1:], data[1:], strict=False):
        if shared_data_settings(other) != shared_data_settings(data[0]):
            raise RunError(
                f"{run_dir}: its data settings differ from those of {run_dirs[0]}; "
                "evaluate an ensemble of runs over one data set and preprocessing, "
                "or score it with brats-seg predict"
            )
    by_plane: dict[str, list[int]] = {}  # in the order of the runs: the first run's plane first
    for i, d in enumerate(data):
        by_plane.setdefault(str(d["plane"]), []).append(i)  # completed by open_run
    groups = [
        (
            [run_backend(runs[i].load_model(), cfgs[i], runs[i].checkpoint) for i in members],
            prepare_data(cfgs[members[0]].data),
            math.lcm(*(model_divisor(cfgs[i]) for i in members)),
        )
        for members in by_plane.values()
    ]
    ev = cfgs[0].evaluate
    (models, prepared, divisor), other_planes = groups[0], groups[1:]
    metrics, overlays = evaluate_model(
        models,
        prepared,
        tests[0],
        other_planes=other_planes,
        empty_rule=ev.empty_rule,
        batch_size=batch_size,
        n_overlays=ev.overlays,
        divisor=divisor,
        tta=ev.tta,
        postprocess=ev.postprocess,
        lesionwise=ev.lesionwise,
    )
    if len(runs) == 1 and backend_name(models[0]) == INT8:  # one run, evaluated into out=
        metrics["int8_check"] = _int8_check(
            models[0], runs[0], prepared, tests[0], cfgs[0], metrics
        )
    metrics["inference"]["runs"] = [str(Path(r).resolve()) for r in run_dirs]
    metrics["inference"]["run_checks"] = [run.record() for run in runs]
    if len(by_plane) > 1:
        metrics["inference"]["models"] = len(run_dirs)
        metrics["inference"]["planes"] = [str(d["plane"]) for d in data]
    from brats_seg.outputs import staged_output

    with staged_output(out, "evaluate") as tmp:
        write_evaluation(tmp, metrics, overlays, title=f"ensemble of {len(run_dirs)} runs")
    return metrics
