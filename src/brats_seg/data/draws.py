"""Learning-curve draws: ``data.split.train_patients=N data.split.draw=r``.

Draw r trains on N patient groups and tests on every other group of the data set (no validation
set). The draws of one N are the distinct N-patient combinations in an order shuffled with
``data.split.fold_seed`` (null: 0), never with the run's seed, so draw r names the same patients
for every seed, model and recipe; r must be below the number of combinations. Groups are ordered
by their first case id before the shuffle, so the draws depend on the patients alone, not on the
order the files were found in.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from brats_seg.errors import DataError


def draw_groups(
    n_groups: int, train_patients: int, draw: int, shuffle_seed: int | None
) -> list[int]:
    """Indices (into groups sorted by first case id) of the training groups of one draw."""
    if not 1 <= train_patients < n_groups:
        raise DataError(
            f"data.split.train_patients={train_patients}: the data holds {n_groups} distinct "
            f"patient(s), so a draw trains on 1 to {n_groups - 1} and tests on the rest"
        )
    count = math.comb(n_groups, train_patients)
    if draw >= count:
        raise DataError(
            f"data.split.draw={draw}: {n_groups} patients give {count} distinct draws of "
            f"{train_patients}, numbered 0 to {count - 1}"
        )
    combos = list(itertools.combinations(range(n_groups), train_patients))
    order = np.random.default_rng(0 if shuffle_seed is None else shuffle_seed).permutation(count)
    return list(combos[int(order[draw])])


def draw_split(
    groups: list[list[str]], train_patients: int, draw: int, shuffle_seed: int | None = None
) -> dict[str, list[str]]:
    """Case ids of train/val/test for one draw: val is empty, test is every patient not drawn."""
    ordered = sorted(groups, key=lambda g: min(g))
    chosen = set(draw_groups(len(ordered), train_patients, draw, shuffle_seed))
    train = sorted(c for i, g in enumerate(ordered) if i in chosen for c in g)
    test = sorted(c for i, g in enumerate(ordered) if i not in chosen for c in g)
    return {"train": train, "val": [], "test": test}
