"""Train/val/test split by patient.

Cases whose decoded images are identical (the same patient shipped under two names, e.g. BraTS2021_00000 and
BraTS-GLI-00000-000) share a content fingerprint and form one group, and a group never straddles two splits.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

import numpy as np

from brats_seg.data.settings import to_plain
from brats_seg.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")
MIN_GROUPS = len(SPLITS)


def content_fingerprint(image: np.ndarray) -> str:
    """sha256 of the decoded voxels (as float32, in Fortran order like NIfTI) and the shape: equal images, equal
    fingerprint, whatever the array's memory layout."""
    data = np.asfortranarray(image, dtype=np.float32)
    digest = hashlib.sha256(repr(data.shape).encode())
    digest.update(memoryview(data.T).cast("B"))  # data.T of a Fortran array is C-contiguous: no copy
    return digest.hexdigest()


def split_fractions(split_cfg: Mapping[str, Any] | None) -> tuple[tuple[float, float, float], int]:
    """``((train, val, test), seed)`` from ``data.split``, validated; ``train: null`` takes what val and test
    leave. A val or test fraction of 0 leaves that split empty (``test=0``: train on every patient)."""
    cfg = to_plain(split_cfg) or {}
    fractions = []
    for name, default in zip(SPLITS, (0.6, 0.2, 0.2)):
        value = cfg.get(name, default)
        if name == "train" and value is None:
            fractions.append(None)
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            raise ConfigError(f"data.split.{name} must be a fraction between 0 and 1, got {value!r}")
        fractions.append(float(value))
    if fractions[0] is None:
        fractions[0] = 1.0 - fractions[1] - fractions[2]
        if fractions[0] <= 0:
            raise ConfigError(f"data.split: val={fractions[1]} and test={fractions[2]} leave no patient to train on")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(f"data.split fractions must add up to 1, got train={fractions[0]} val={fractions[1]} "
                          f"test={fractions[2]} (or set data.split.train=null: the rest)")
    seed = cfg.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"data.split.seed must be an integer, got {seed!r}")
    return (fractions[0], fractions[1], fractions[2]), seed


def group_cases(fingerprints: Mapping[str, str]) -> list[list[str]]:
    """Cases with equal fingerprints grouped together; groups and their members sorted by case id."""
    groups: dict[str, list[str]] = {}
    for case_id in sorted(fingerprints):
        groups.setdefault(fingerprints[case_id], []).append(case_id)
    return sorted(groups.values())


def split_counts(n_groups: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Groups per split: val and test get round(fraction * n), at least 1 unless their fraction is 0; train the
    rest (at least 1)."""
    n_val = max(1, round(fractions[1] * n_groups)) if fractions[1] > 0 else 0
    n_test = max(1, round(fractions[2] * n_groups)) if fractions[2] > 0 else 0
    while n_groups - n_val - n_test < 1:  # the fractions leave train empty: take from the larger of val/test
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    return n_groups - n_val - n_test, n_val, n_test


def split_cases(fingerprints: Mapping[str, str], fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
                seed: int = 0) -> dict[str, list[str]]:
    """Assign case ids to train/val/test by patient group; deterministic for a given seed."""
    groups = group_cases(fingerprints)
    needed = 1 + (fractions[1] > 0) + (fractions[2] > 0)
    if len(groups) < needed:
        raise DataError(f"found {len(groups)} distinct patient(s) in {len(fingerprints)} case(s); a train/val/test "
                        f"split needs at least {needed}")
    n_train, n_val, n_test = split_counts(len(groups), fractions)
    order = np.random.default_rng(seed).permutation(len(groups))
    chosen = {
        "val": order[:n_val],
        "test": order[n_val:n_val + n_test],
        "train": order[n_val + n_test:],
    }
    return {name: sorted(c for g in chosen[name] for c in groups[g]) for name in SPLITS}
