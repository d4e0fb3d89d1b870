"""Learning-curve draws (data/draws.py): which patients a draw trains on and tests on."""

from __future__ import annotations

import math

import pytest

from brats_seg.config import check_options, compose
from brats_seg.data.draws import draw_split
from brats_seg.errors import ConfigError, DataError

# Five patients; the second holds two cases (one patient scanned twice, as in the shared data).
GROUPS = [["p0"], ["p1a", "p1b"], ["p2"], ["p3"], ["p4"]]
ALL_CASES = sorted(c for g in GROUPS for c in g)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_each_draw_trains_on_n_patients_and_tests_on_every_other(n):
    for draw in range(math.comb(5, n)):
        split = draw_split(GROUPS, n, draw)
        trained = [g for g in GROUPS if set(g) <= set(split["train"])]
        assert len(trained) == n
        assert not set(split["train"]) & set(split["test"])  # disjoint
        assert sorted(split["train"] + split["test"]) == ALL_CASES  # nobody left out
        assert split["val"] == []
        # one patient's cases never straddle the two sides
        assert all(set(g) <= set(split["train"]) or set(g) <= set(split["test"]) for g in GROUPS)


def test_draws_of_one_n_are_distinct_and_reproducible_by_seed():
    draws = [tuple(draw_split(GROUPS, 2, r)["train"]) for r in range(10)]
    assert len(set(draws)) == 10  # all C(5, 2) combinations, each once
    assert draws == [tuple(draw_split(GROUPS, 2, r)["train"]) for r in range(10)]
    reordered = list(reversed(GROUPS))  # the order the cases were found in does not matter
    assert draws == [tuple(draw_split(reordered, 2, r)["train"]) for r in range(10)]
    shuffled = [tuple(draw_split(GROUPS, 2, r, shuffle_seed=7)["train"]) for r in range(10)]
    assert sorted(shuffled) == sorted(draws) and shuffled != draws


def test_impossible_draws_are_refused_naming_the_option():
    with pytest.raises(DataError, match=r"data.split.train_patients=5: .* 1 to 4"):
        draw_split(GROUPS, 5, 0)
    with pytest.raises(DataError, match=r"data.split.draw=5: .* 5 distinct draws of 4"):
        draw_split(GROUPS, 4, 5)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["data.split.train_patients=0"], "data.split.train_patients=0"),
        (["data.split.train_patients=2", "data.split.draw=-1"], "data.split.draw=-1"),
        (["data.split.train_patients=2", "data.split.folds=3"], "data.split.folds=3"),
        (["data.split.train_patients=2", "data.split.val=0.2"], "data.split.val=0.2"),
    ],
)
def test_draw_options_are_checked_at_compose_time(overrides, named):
    cfg = compose("train", ["debug=tiny", "data.split.val=0", *overrides])
    with pytest.raises(ConfigError, match=rf"^{named}"):
        check_options(cfg)
