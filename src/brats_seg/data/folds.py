"""K-fold cross-validation by patient: ``data.split.folds=K data.split.fold=i``.

The patient groups (cases with identical images are one group, see split.py) are dealt into K folds
with scikit-learn's GroupKFold; fold i is the test set. ``data.split.val`` is then the share of the
remaining groups held out for validation (0: train on all of them). The train and test fractions are
not used in this mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from brats_seg.data.settings import to_plain
from brats_seg.errors import ConfigError, DataError


def fold_settings(split_cfg: Mapping[str, Any] | None) -> tuple[int, int] | None:
    """``(folds, fold)`` from ``data.split``, or None when ``data.split.folds`` is null (a
    fractional split)."""
    cfg = to_plain(split_cfg) or {}
    folds = cfg.get("folds")
    if folds is None:
        return None
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 2:
        raise ConfigError(f"data.split.folds must be null or a whole number >= 2, got {folds!r}")
    fold = cfg.get("fold", 0)
    if not isinstance(fold, int) or isinstance(fold, bool) or not 0 <= fold < folds:
        raise ConfigError(
            f"data.split.fold must be a whole number from 0 to {folds - 1} "
            f"(data.split.folds={folds}), got {fold!r}"
        )
    return folds, fold


def val_fraction_and_seed(split_cfg: Mapping[str, Any] | None) -> tuple[float, int]:
    cfg = to_plain(split_cfg) or {}
    val = cfg.get("val", 0.0)
    if not isinstance(val, (int, float)) or isinstance(val, bool) or not 0 <= val < 1:
        raise ConfigError(f"data.split.val must be a fraction in [0, 1), got {val!r}")
    seed = cfg.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"data.split.seed must be an integer, got {seed!r}")
    return float(val), seed


def fold_groups(groups: list[list[str]], folds: int) -> list[list[int]]:
    """Group indices of each test fold, from GroupKFold over one sample per case (deterministic)."""
    from sklearn.model_selection import GroupKFold

    if folds > len(groups):
        raise DataError(
            f"data.split.folds={folds}, but the data holds only {len(groups)} distinct patient(s)"
        )
    labels = np.concatenate([np.full(len(g), i) for i, g in enumerate(groups)])
    out = []
    for _, test in GroupKFold(n_splits=folds).split(np.zeros(len(labels)), groups=labels):
        out.append(sorted({int(labels[i]) for i in test}))
    return out


def kfold_split(
    groups: list[list[str]], folds: int, fold: int, val_fraction: float = 0.0, seed: int = 0
) -> dict[str, list[str]]:
    """Case ids of train/val/test for fold ``fold`` of ``folds``, by patient group."""
    test = fold_groups(groups, folds)[fold]
    rest = [g for g in range(len(groups)) if g not in test]
    n_val = max(1, round(val_fraction * len(rest))) if val_fraction > 0 else 0
    if n_val >= len(rest):
        raise DataError(
            f"data.split.val={val_fraction} leaves no training patient in fold {fold} "
            f"({len(rest)} patient(s) outside the test fold)"
        )
    order = np.random.default_rng(seed).permutation(len(rest))
    val = [rest[i] for i in order[:n_val]]
    train = [rest[i] for i in order[n_val:]]
    return {
        name: sorted(c for g in chosen for c in groups[g])
        for name, chosen in (("train", train), ("val", val), ("test", test))
    }
