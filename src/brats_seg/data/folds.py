"""K-fold cross-validation by patient: ``data.split.folds=K data.split.fold=i``.

The patient groups (cases with identical images are one group, see split.py) are dealt into K folds
with scikit-learn's GroupKFold; fold i is the test set. ``data.split.fold_seed`` null (the default)
deals them without shuffling, so the folds depend on the patients alone; an integer shuffles the
groups first with that seed: ``GroupKFold(shuffle=True, random_state=fold_seed)`` where the
installed scikit-learn has it (1.6 on), else ``StratifiedGroupKFold(shuffle=True,
random_state=fold_seed)`` with one stratum. The fold assignment never follows the run's seed, so
the seeds of one fold test the same patients (their mean ± sd is over models, and they can be
ensembled). ``data.split.val`` is then the share of the remaining groups held out for validation
(0: train on all of them), drawn with ``data.split.seed``. The train and test fractions are not
used in this mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from brats_seg.config_schema import to_plain
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


def fold_seed(split_cfg: Mapping[str, Any] | None) -> int | None:
    """``data.split.fold_seed``: null (folds dealt without shuffling) or the seed of the shuffle."""
    cfg = to_plain(split_cfg) or {}
    value = cfg.get("fold_seed")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise ConfigError(f"data.split.fold_seed must be null or an integer, got {value!r}")
    return value


def _group_kfold(folds: int, shuffle_seed: int | None):
    """The splitter: GroupKFold, shuffled with ``shuffle_seed`` where given (StratifiedGroupKFold
    for a scikit-learn whose GroupKFold cannot shuffle)."""
    import inspect

    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    if shuffle_seed is None:
        return GroupKFold(n_splits=folds)
    if "shuffle" in inspect.signature(GroupKFold).parameters:
        return GroupKFold(n_splits=folds, shuffle=True, random_state=shuffle_seed)
    return StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=shuffle_seed)


def fold_groups(
    groups: list[list[str]], folds: int, shuffle_seed: int | None = None
) -> list[list[int]]:
    """Group indices of each test fold, from GroupKFold over one sample per case (deterministic;
    shuffled with ``shuffle_seed`` where given)."""
    if folds > len(groups):
        raise DataError(
            f"data.split.folds={folds}, but the data holds only {len(groups)} distinct patient(s)"
        )
    labels = np.concatenate([np.full(len(g), i) for i, g in enumerate(groups)])
    splitter = _group_kfold(folds, shuffle_seed)
    out = []
    for _, test in splitter.split(np.zeros(len(labels)), np.zeros(len(labels)), groups=labels):
        out.append(sorted({int(labels[i]) for i in test}))
    return out


def kfold_split(
    groups: list[list[str]],
    folds: int,
    fold: int,
    val_fraction: float = 0.0,
    seed: int = 0,
    shuffle_seed: int | None = None,
) -> dict[str, list[str]]:
    """Case ids of train/val/test for fold ``fold`` of ``folds``, by patient group: the folds
    shuffled with ``shuffle_seed`` (``data.split.fold_seed``; None: not shuffled), the validation
    groups drawn with ``seed``."""
    test = fold_groups(groups, folds, shuffle_seed)[fold]
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
