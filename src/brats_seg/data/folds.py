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

from typing import Any

import numpy as np

from brats_seg.config_schema import to_plain
from brats_seg.errors import DataError


def fold_settings(split_cfg: Any) -> tuple[int, int] | None:
    """``(folds, fold)`` from ``data.split``, or None when ``data.split.folds`` is null (a
    fractional split). The schema has checked both (fold < folds)."""
    cfg = to_plain(split_cfg)
    return None if cfg["folds"] is None else (int(cfg["folds"]), int(cfg["fold"]))


def val_fraction_and_seed(split_cfg: Any) -> tuple[float, int]:
    cfg = to_plain(split_cfg)
    return float(cfg["val"]), int(cfg["seed"])


def fold_seed(split_cfg: Any) -> int | None:
    """``data.split.fold_seed``: null (folds dealt without shuffling) or the seed of the shuffle."""
    return to_plain(split_cfg)["fold_seed"]


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
