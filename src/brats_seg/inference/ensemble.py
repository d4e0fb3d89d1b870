"""Ensembles of runs: which run folders ``run=`` names, and their averaged softmax on a case's full
grid.

``run=`` may be one run folder, a list ``[A,B,...]`` of run folders, or a folder that is not itself
a run (a sweep folder, e.g. the K folds of a cross-validation): then every completed run found under
it. Each member prepares the case with its own run's preprocessing and predicts with its own model;
the softmax of every member is put back on the case's full grid and averaged there, so members
trained on different crops, channels or planes (``data.plane``) still combine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from brats_seg.errors import ConfigError, DataError, RunError
from brats_seg.runfolder import CONFIG_FILE, OpenedRun, find_completed_runs, is_run_dir

# What the members of an ensemble evaluated on their test patients may differ in: the worker count;
# the split settings (the seeds of one fold draw other validation patients), since their test
# patients are compared instead; the plane (the softmax is averaged in volume space); and what
# shapes training alone (augmentation, sampling, patches).
MEMBER_DATA_FREEDOM = ("workers", "split", "plane", "augment", "sampling", "patch")


def shared_data_settings(data: dict[str, Any]) -> dict[str, Any]:
    """The resolved ``data`` settings that every member of an evaluated ensemble must share."""
    return {k: v for k, v in data.items() if k not in MEMBER_DATA_FREEDOM}


def resolve_runs(spec: Any) -> list[Path]:
    """Run folders named by ``run=``: one folder, a list of folders, or a sweep folder's completed
    runs."""
    from brats_seg.config_schema import to_plain

    spec = to_plain(spec)
    if spec in (None, "", []):
        raise ConfigError(
            "run: name a run folder, a list [A,B,...] of run folders, or a sweep folder"
        )
    paths = [Path(str(p)) for p in (spec if isinstance(spec, (list, tuple)) else [spec])]
    runs: list[Path] = []
    for path in paths:
        if not path.exists():
            raise RunError(f"{path}: no such run folder")
        if is_run_dir(path) or len(paths) > 1:
            runs.append(path)
            continue
        found = find_completed_runs(path)
        if not found:
            raise RunError(
                f"{path}: not a brats-seg run folder (no {CONFIG_FILE}), "
                "and no completed run under it"
            )
        runs.extend(found)
    return runs


@dataclass
class Member:
    run_dir: Path
    model: Any
    preprocess: Any  # PreprocessSettings
    divisor: int
    cfg: Any  # the run's config
    # (H, W, C) the model was built for, when it was rebuilt to take any size; None otherwise
    trained_shape: tuple[int, int, int] | None = None


def load_members(
    runs: list[OpenedRun], *, any_size: bool = False, backend: Any = None
) -> list[Member]:
    """The runs' models (each checked by runfolder.open_run) with their preprocessing.
    ``any_size``: a model of fixed size is rebuilt fully convolutional (same weights), so that only
    the brain's box is predicted. ``backend``: the runtime of their forward pass (null: each run's
    own evaluate.backend; see backends.py)."""
    from brats_seg.data.settings import PreprocessSettings
    from brats_seg.inference.backends import run_backend
    from brats_seg.models.registry import any_size_copy, divisor

    members = []
    for run in runs:
        cfg = run.cfg
        model = run.load_model()
        copy = any_size_copy(model, cfg.model) if any_size else model
        members.append(
            Member(
                run.path,
                run_backend(copy, cfg, run.checkpoint, backend),
                PreprocessSettings.from_data_cfg(cfg.data),
                divisor(cfg.model),
                cfg,
                tuple(int(d) for d in model.input_shape[1:]) if copy is not model else None,
            )
        )
    return members


def check_slice_shape(case_id: str, got: tuple, expected: tuple, run_dir: Path) -> None:
    """Refuse slices of shape ``got`` (H, W, C) that a model built for ``expected`` cannot take:
    other channels, or another size where ``expected`` fixes one (None: any size)."""
    fmt = lambda s: "x".join("?" if d is None else str(d) for d in s)  # noqa: E731
    got = tuple(int(d) for d in got)
    fits = all(e is None or int(e) == g for e, g in zip(expected, got, strict=True))
    if not fits:
        raise DataError(
            f"{case_id}: its preprocessed slices are {fmt(got)} (HxWxchannels) "
            f"but the model of {run_dir} "
            f"was trained on {fmt(expected)}; predict cases of the size the run was trained on"
        )


def full_grid(probs: np.ndarray, crop_box, full_shape, plane: str = "axial") -> np.ndarray:
    """Softmax (S, h, w, K) of cropped slices of ``plane`` -> (X, Y, Z, K) on the volume's full
    grid, background 1 off the crop."""
    from brats_seg.data.planes import slices_to_volume

    volume = slices_to_volume(probs, plane)
    if crop_box is None:
        return volume
    x0, x1, y0, y1 = (int(v) for v in crop_box)
    out = np.zeros(tuple(int(s) for s in full_shape) + (probs.shape[-1],), dtype=np.float32)
    out[..., 0] = 1.0
    out[x0:x1, y0:y1] = volume
    return out


def ensemble_classes(
    members: list[Member], loaded, *, batch_size: int = 16, tta: bool, post: Any = None
):
    """The ensemble's class volume (X, Y, Z) uint8 for a loaded case (the argmax of the mean
    softmax, or the region thresholds of the PostprocessSettings ``post``), and the first member's
    prepared case and its class slices (for the montage)."""
    from brats_seg.inference.postprocess import PostprocessSettings, classes_from_probabilities

    probs, prepared = ensemble_probabilities(members, loaded, batch_size=batch_size, tta=tta)
    return classes_from_probabilities(probs, post or PostprocessSettings()), prepared


def ensemble_probabilities(
    members: list[Member],
    loaded,
    *,
    batch_size: int = 16,
    tta: bool,
    temperatures: list[float] | None = None,
):
    """The members' averaged softmax (X, Y, Z, K) float32 on a loaded case's full grid, and the
    first member's prepared case. ``temperatures``: one per member, each member's softmax tempered
    by its own before the average (inference/calibration.py)."""
    from brats_seg.data.planes import slice_size
    from brats_seg.data.preprocess import preprocess_case
    from brats_seg.inference.calibration import temper
    from brats_seg.inference.slices import is_fully_convolutional, predict_probabilities

    prepared: dict[str, Any] = {}
    total = None
    for i, member in enumerate(members):
        settings = member.preprocess
        if member.trained_shape is not None:
            # The slices it was trained on: the run's crop, or the whole slice.
            cropped = (*(settings.crop_size or loaded.image.shape[:2]), loaded.image.shape[2])
            rows, cols = slice_size(cropped, settings.plane)
            got = (rows, cols, member.trained_shape[-1])
            check_slice_shape(loaded.case_id, got, member.trained_shape, member.run_dir)
        if is_fully_convolutional(member.model):
            # It takes any size, and only the brain's box is predicted: the training crop is not
            # needed, and dropping it keeps the whole brain of a patient whose head is larger than
            # the crop.
            settings = replace(settings, crop_size=None)
        key = json.dumps(settings.as_dict(), sort_keys=True)
        if key not in prepared:
            prepared[key] = preprocess_case(loaded, settings)
        case = prepared[key]
        check_slice_shape(
            loaded.case_id, case.x.shape[1:], member.model.input_shape[1:], member.run_dir
        )
        probs = predict_probabilities(
            member.model, case.x, batch_size, divisor=member.divisor, tta=tta
        )
        if temperatures is not None:
            probs = temper(probs, temperatures[i])
        probs = full_grid(probs, case.crop_box, case.full_shape, case.plane)
        total = probs if total is None else total + probs
    if len(members) > 1:
        total /= len(members)
    return total, next(iter(prepared.values()))
