"""Temperature scaling of a run's softmax (Guo et al., 2017): one temperature per run, fitted on the
validation patients, applied at evaluation and, on request, by predict.

The models end in a softmax, so the logits are taken as ``log p`` (a probability of exactly 0 as
``LOG_FLOOR``): ``softmax(log(p) / T)`` equals the softmax of the tempered logits, since a constant
added to every logit of a voxel cancels. ``T > 1`` softens an over-confident model, ``T < 1``
sharpens an under-confident one; the class with the largest probability stays the same. ``T`` is
the one that minimises the mean negative log-likelihood of the true class over the brain voxels
(any input channel non-zero) of every validation patient, searched in ``TEMPERATURE_BOUNDS``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from brats_seg.errors import RunError

log = logging.getLogger(__name__)

# The log of a probability that underflowed to 0: float32's smallest normal number, e^-87.3.
LOG_FLOOR = float(np.finfo(np.float32).tiny)
TEMPERATURE_BOUNDS = (0.05, 20.0)
# At most this many brain voxels of the validation patients enter the fit (a random sample, seeded):
# a scalar is well determined long before, and memory stays bounded on whole volumes.
MAX_FIT_VOXELS = 2_000_000
FIT_SAMPLE_SEED = 0


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax probabilities (..., K) tempered by ``temperature``: ``softmax(log(p) / T)``."""
    probs = np.asarray(probs, dtype=np.float32)
    if temperature == 1.0:
        return probs.copy()
    z = np.log(np.maximum(probs, LOG_FLOOR)) / np.float32(temperature)
    z -= z.max(axis=-1, keepdims=True)
    out = np.exp(z)
    out /= out.sum(axis=-1, keepdims=True)
    return out


def mean_nll(probs: np.ndarray, truth: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true classes ``truth`` (N,) under ``probs`` (N, K)
    tempered by ``temperature``."""
    z = np.log(np.maximum(np.asarray(probs, dtype=np.float64), LOG_FLOOR)) / temperature
    top = z.max(axis=1)
    log_norm = top + np.log(np.exp(z - top[:, None]).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(z)), np.asarray(truth, dtype=np.int64)]))


def fit_temperature(probs: np.ndarray, truth: np.ndarray) -> float:
    """The temperature in ``TEMPERATURE_BOUNDS`` that minimises the mean NLL of ``truth`` (N,)
    under ``probs`` (N, K) (a bounded scalar search over log T)."""
    from scipy.optimize import minimize_scalar

    if len(truth) == 0:
        raise ValueError("no voxels to fit a temperature on")
    low, high = (float(np.log(b)) for b in TEMPERATURE_BOUNDS)
    result = minimize_scalar(
        lambda log_t: mean_nll(probs, truth, float(np.exp(log_t))),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


def brain_voxels(
    probs: np.ndarray, x: np.ndarray, truth: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(probs (N, K), truth (N,))`` of the brain voxels of one preprocessed volume: ``probs``
    (S, H, W, K), its input ``x`` (S, H, W, C) and true classes ``truth`` (S, H, W), all on the
    cached grid."""
    brain = np.any(x != 0, axis=-1)
    return probs[brain], np.asarray(truth)[brain]


def check_validation_patients(split: dict[str, list[str]]) -> None:
    """Refuse calibration with a split that has no validation patients (before training)."""
    if not split.get("val"):
        raise RunError(
            "evaluate.calibration=true: the split has no validation patients to fit the "
            "temperature on (raise data.split.val)"
        )


def calibrate_run(folder, model, prepared, split, cfg, checkpoint: Path) -> dict[str, Any]:
    """Fit the temperature of a run's model (``checkpoint``'s) on its validation patients, with the
    run's own ``evaluate`` settings (``cfg``), and store it in the run folder's calibration.json."""
    from brats_seg.atomic import write_json
    from brats_seg.models.registry import divisor

    record = fit_run_temperature(
        model,
        prepared,
        list(split.get("val") or []),
        batch_size=int(cfg.evaluate.batch_size),
        divisor=divisor(cfg.model),
        tta=bool(cfg.evaluate.tta),
        checkpoint=checkpoint,
    )
    write_json(folder.calibration_path, record)
    return record


def fit_run_temperature(
    model,
    prepared,
    val_cases: list[str],
    *,
    batch_size: int,
    divisor: int,
    tta: bool,
    checkpoint: Path,
) -> dict[str, Any]:
    """Fit a run's temperature on its validation patients' brain voxels; the record that
    calibration.json holds (``checkpoint``: the model's file, whose sha256 ties it to the
    record)."""
    from brats_seg.data.cache import file_sha256
    from brats_seg.data.preprocess import on_cached_grid
    from brats_seg.inference.slices import predict_probabilities

    check_validation_patients({"val": val_cases})
    all_probs, all_truth = [], []
    for case_id in val_cases:
        x, y_full, meta = prepared.load_volume(case_id)
        probs = predict_probabilities(model, x, batch_size, divisor=divisor, tta=tta)
        truth = on_cached_grid(y_full, meta.get("crop_box"), prepared.preprocess.plane)
        p, t = brain_voxels(probs, x, truth)
        all_probs.append(p)
        all_truth.append(t)
    probs = np.concatenate(all_probs)
    truth = np.concatenate(all_truth)
    voxels = len(truth)
    if voxels == 0:
        raise RunError("evaluate.calibration=true: the validation patients hold no brain voxel")
    if voxels > MAX_FIT_VOXELS:
        keep = np.random.default_rng(FIT_SAMPLE_SEED).choice(voxels, MAX_FIT_VOXELS, replace=False)
        probs, truth = probs[keep], truth[keep]
    temperature = fit_temperature(probs, truth)
    low, high = TEMPERATURE_BOUNDS
    if not low * 1.01 < temperature < high * 0.99:
        log.warning("the fitted temperature %.4g lies at the edge of the search range", temperature)
    record = {
        "temperature": temperature,
        "validation_cases": list(val_cases),
        "voxels": voxels,
        "fit_voxels": int(len(truth)),
        "nll_before": mean_nll(probs, truth),
        "nll_after": mean_nll(probs, truth, temperature),
        "tta": bool(tta),
        "checkpoint": checkpoint.name,
        "checkpoint_sha256": file_sha256(checkpoint),
    }
    log.info(
        "temperature %.4f fitted on %d validation patient(s) (NLL %.4f -> %.4f)",
        temperature,
        len(val_cases),
        record["nll_before"],
        record["nll_after"],
    )
    return record


def run_temperature(run, tta: bool) -> float:
    """The temperature stored in an opened run (runfolder.OpenedRun), checked against what it is
    applied to: a temperature fitted on another model file, or on softmax averaged with (or
    without) the mirror that this prediction does not use, is refused."""
    from brats_seg.data.cache import file_sha256

    record = run.folder.read_calibration()
    where = run.folder.calibration_path
    if record.get("checkpoint_sha256") != file_sha256(run.checkpoint):
        raise RunError(
            f"{where}: its temperature was fitted on another model file than "
            f"{run.checkpoint} ({record.get('checkpoint')}); brats-seg evaluate run={run.path} "
            "calibration=true fits it again"
        )
    if "tta" in record and bool(record["tta"]) != bool(tta):
        raise RunError(
            f"{where}: its temperature was fitted with tta={str(record['tta']).lower()}, this "
            f"prediction uses tta={str(bool(tta)).lower()}: predict with "
            f"tta={str(record['tta']).lower()}, or fit it again (brats-seg evaluate run={run.path} "
            f"calibration=true tta={str(bool(tta)).lower()})"
        )
    return float(record["temperature"])
