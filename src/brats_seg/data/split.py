"""Train/val/test split by patient.

Two cases belong to one patient group when either
- their decoded images are identical (the same scan shipped under two names, e.g.
  BraTS2021_00000 and BraTS-GLI-00000-000): they share a content fingerprint; or
- their BraTS 2023/2024 names carry the same patient: ``BraTS-GLI-00123-000`` and
  ``BraTS-GLI-00123-001`` are two timepoints of patient 00123 of the GLI task (likewise MEN, MET,
  PED, SSA, ...).
Groups are closed under both relations, and a group never straddles two splits.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from brats_seg.config_schema import to_plain
from brats_seg.errors import DataError

SPLITS = ("train", "val", "test")
# BraTS 2023/2024 case ids: BraTS-<task>-<patient, 5 digits>-<timepoint, 3 digits>
_PATIENT_ID = re.compile(r"^(BraTS-[A-Za-z]+-\d{5})-\d{3}$")


def patient_id(case_id: str) -> str | None:
    """``BraTS-GLI-00123`` for ``BraTS-GLI-00123-001`` (task and patient); None for names without
    one."""
    match = _PATIENT_ID.match(case_id)
    return match.group(1) if match else None


def content_fingerprint(image: np.ndarray) -> str:
    """sha256 of the decoded voxels (as float32, in Fortran order like NIfTI) and the shape: equal
    images, equal fingerprint, whatever the array's memory layout."""
    data = np.asfortranarray(image, dtype=np.float32)
    digest = hashlib.sha256(repr(data.shape).encode())
    digest.update(
        memoryview(data.T).cast("B")
    )  # data.T of a Fortran array is C-contiguous: no copy
    return digest.hexdigest()


def split_fractions(split_cfg: Any) -> tuple[tuple[float, float, float], int]:
    """``((train, val, test), seed)`` from ``data.split`` (checked by its schema: they add up to
    1); ``train: null`` takes what val and test leave. A val or test fraction of 0 leaves that split
    empty (``test=0``: train on every patient)."""
    cfg = to_plain(split_cfg)
    val, test = float(cfg["val"]), float(cfg["test"])
    train = 1.0 - val - test if cfg["train"] is None else float(cfg["train"])
    return (train, val, test), int(cfg["seed"])


def group_cases(fingerprints: Mapping[str, str]) -> list[list[str]]:
    """Cases with equal fingerprints or one BraTS 2023 patient id grouped together; groups and their
    members sorted by case id."""
    parent = {case_id: case_id for case_id in fingerprints}

    def root(case_id: str) -> str:
        while parent[case_id] != case_id:
            parent[case_id] = parent[parent[case_id]]
            case_id = parent[case_id]
        return case_id

    first_of: dict[tuple[str, str], str] = {}
    for case_id in sorted(fingerprints):
        keys = [("content", fingerprints[case_id])]
        patient = patient_id(case_id)
        if patient is not None:
            keys.append(("patient", patient))
        for key in keys:
            other = first_of.setdefault(key, case_id)
            parent[root(case_id)] = root(other)
    groups: dict[str, list[str]] = {}
    for case_id in sorted(fingerprints):
        groups.setdefault(root(case_id), []).append(case_id)
    return sorted(groups.values())


def distinct_scans(
    case_ids: list[str], fingerprints: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """``case_ids`` with byte-identical duplicates dropped (the first id in sorted order is kept),
    and ``{dropped: kept}``; a patient shipped twice is scored once."""
    kept: dict[str, str] = {}
    duplicates = {}
    for case_id in sorted(case_ids):
        first = kept.setdefault(fingerprints[case_id], case_id)
        if first != case_id:
            duplicates[case_id] = first
    return [c for c in case_ids if c not in duplicates], duplicates


def split_counts(n_groups: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Groups per split: val and test get round(fraction * n), at least 1 unless their fraction is
    0; train the rest (at least 1)."""
    n_val = max(1, round(fractions[1] * n_groups)) if fractions[1] > 0 else 0
    n_test = max(1, round(fractions[2] * n_groups)) if fractions[2] > 0 else 0
    while (
        n_groups - n_val - n_test < 1
    ):  # the fractions leave train empty: take from the larger of val/test
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    return n_groups - n_val - n_test, n_val, n_test


def split_cases(
    fingerprints: Mapping[str, str],
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    seed: int = 0,
) -> dict[str, list[str]]:
    """Assign case ids to train/val/test by patient group; deterministic for a given seed."""
    groups = group_cases(fingerprints)
    needed = 1 + (fractions[1] > 0) + (fractions[2] > 0)
    if len(groups) < needed:
        raise DataError(
            f"found {len(groups)} distinct patient(s) in {len(fingerprints)} case(s); "
            "a train/val/test "
            f"split needs at least {needed}"
        )
    n_train, n_val, n_test = split_counts(len(groups), fractions)
    order = np.random.default_rng(seed).permutation(len(groups))
    chosen = {
        "val": order[:n_val],
        "test": order[n_val : n_val + n_test],
        "train": order[n_val + n_test :],
    }
    return {name: sorted(c for g in chosen[name] for c in groups[g]) for name in SPLITS}
