"""Patient k-fold cross-validation (data.split.folds / fold) and splits that leave val or test
empty."""

from __future__ import annotations

import pytest

from brats_seg.data.folds import fold_settings, kfold_split, val_fraction_and_seed
from brats_seg.data.split import group_cases, split_cases, split_fractions
from brats_seg.errors import DataError

# Seven patients in nine cases: two patients were shipped under two names each (equal images, equal
# fingerprint).
FINGERPRINTS = {
    "BraTS2021_00000": "p0",
    "BraTS-GLI-00000-000": "p0",
    "BraTS2021_00014": "p1",
    "BraTS2021_00019": "p2",
    "Brats18_2013_2_1": "p3",
    "BraTS2021_00100": "p4",
    "BraTS-GLI-00100-000": "p4",
    "BraTS2021_00200": "p5",
    "BraTS2021_00300": "p6",
}


def _refusal(*overrides: str) -> str:
    """The one line that composing and checking ``train`` with ``overrides`` ends in."""
    from brats_seg.config import check_options, compose, one_line

    with pytest.raises(Exception) as err:  # noqa: PT011  (Hydra's or ours: both one line)
        check_options(compose("train", list(overrides)))
    return one_line(err.value)


def patients(cases):
    return {FINGERPRINTS[c] for c in cases}


@pytest.mark.parametrize("folds", [2, 3, 4, 7])
def test_folds_are_disjoint_by_patient_and_cover_every_patient(folds):
    groups = group_cases(FINGERPRINTS)
    tests = []
    for fold in range(folds):
        split = kfold_split(groups, folds, fold, val_fraction=0.0, seed=0)
        assert split["val"] == []
        assert not patients(split["train"]) & patients(split["test"])
        assert sorted(split["train"] + split["test"]) == sorted(
            FINGERPRINTS
        )  # every case is somewhere
        tests.append(split["test"])
    every = [c for test in tests for c in test]
    assert sorted(every) == sorted(FINGERPRINTS)  # each case is tested exactly once
    for i, a in enumerate(tests):
        for b in tests[i + 1 :]:
            assert not patients(a) & patients(b)  # no patient in two test folds
    sizes = sorted(len(patients(t)) for t in tests)
    assert sizes[-1] - sizes[0] <= 1 or folds == 2  # groups dealt out evenly


def test_leave_one_patient_out_and_a_validation_share():
    groups = group_cases(FINGERPRINTS)
    seen = set()
    for fold in range(7):
        split = kfold_split(groups, 7, fold, val_fraction=0.2, seed=3)
        assert len(patients(split["test"])) == 1 and len(patients(split["val"])) == 1
        assert len(patients(split["train"])) == 5
        assert not (patients(split["val"]) & patients(split["train"]))
        seen |= patients(split["test"])
    assert seen == set(FINGERPRINTS.values())
    # the validation patient depends on the seed, the test fold does not
    other = kfold_split(groups, 7, 0, val_fraction=0.2, seed=4)
    assert other["test"] == kfold_split(groups, 7, 0, val_fraction=0.2, seed=3)["test"]


def test_fold_options_are_checked_in_one_line():
    """Read from the composed data.split; a bad value is refused when the config is composed."""
    assert fold_settings({"folds": None, "fold": 3}) is None
    assert fold_settings({"folds": 4, "fold": 3}) == (4, 3)
    assert val_fraction_and_seed({"val": 0.25, "seed": 3}) == (0.25, 3)
    for overrides, message in (
        (["data.split.folds=1"], "data.split.folds=1: must be >= 2"),
        (["data.split.folds=4", "data.split.fold=4"], "data.split.fold=4: must be 0 to 3"),
        (["data.split.folds=four"], "data.split.folds=four"),
        (["data.split.folds=3", "data.split.fold=-1"], "data.split.fold=-1"),
        (
            ["data.split.folds=3", "data.split.val=1.0"],
            "data.split.val=1: must be a share in [0, 1)",
        ),
    ):
        assert message in _refusal(*overrides), overrides
    with pytest.raises(
        DataError, match="data.split.folds=8, but the data holds only 7 distinct patient"
    ):
        kfold_split(group_cases(FINGERPRINTS), 8, 0)
    with pytest.raises(DataError, match="leaves no training patient"):
        kfold_split(group_cases({"a": "1", "b": "2"}), 2, 0, val_fraction=0.5)


def test_test_zero_trains_on_every_patient_and_train_null_takes_the_rest():
    fractions, _ = split_fractions({"train": None, "val": 0.0, "test": 0.0, "seed": 0})
    assert fractions == (1.0, 0.0, 0.0)
    split = split_cases(FINGERPRINTS, fractions, seed=0)
    assert (
        split["test"] == []
        and split["val"] == []
        and sorted(split["train"]) == sorted(FINGERPRINTS)
    )
    fractions, _ = split_fractions({"train": None, "val": 0.0, "test": 0.25, "seed": 0})
    split = split_cases(FINGERPRINTS, fractions, seed=0)
    assert split["val"] == [] and len(patients(split["test"])) == 2
    # a single patient can still train a model when nothing is held out
    assert split_cases({"a": "1"}, (1.0, 0.0, 0.0))["train"] == ["a"]
    assert "data.split.test=0.5: must be with val=0.5, less than 0.5" in _refusal(
        "data.split.train=null", "data.split.val=0.5", "data.split.test=0.5"
    )
    assert "(they add up to 0.8; or null)" in _refusal(
        "data.split.train=0.8", "data.split.val=0", "data.split.test=0"
    )


def test_fold_seed_shuffles_the_folds_and_the_run_seed_does_not():
    """data.split.fold_seed: null deals the folds as before (no shuffle); an integer shuffles the
    patients with it (GroupKFold(shuffle=True) on this scikit-learn). The validation seed never
    moves a patient in or out of a test fold, so seeds of one fold can be compared and ensembled."""
    from brats_seg.data.folds import fold_groups, fold_seed

    groups = group_cases(FINGERPRINTS)
    plain = [kfold_split(groups, 3, f)["test"] for f in range(3)]
    assert plain == [kfold_split(groups, 3, f, shuffle_seed=None)["test"] for f in range(3)]
    shuffled = {
        s: [kfold_split(groups, 3, f, shuffle_seed=s)["test"] for f in range(3)] for s in range(6)
    }
    for tests in shuffled.values():
        assert sorted(c for t in tests for c in t) == sorted(FINGERPRINTS)
        for i, a in enumerate(tests):
            for b in tests[i + 1 :]:
                assert not patients(a) & patients(b)
    assert shuffled[1] == [kfold_split(groups, 3, f, shuffle_seed=1)["test"] for f in range(3)]
    assert len({repr(t) for t in shuffled.values()} | {repr(plain)}) > 2  # the seed matters
    for s in range(3):  # the validation draw (data.split.seed) leaves the test fold alone
        a = kfold_split(groups, 3, 1, val_fraction=0.3, seed=s, shuffle_seed=5)
        assert a["test"] == shuffled[5][1]
    assert fold_groups(groups, 3, None) == fold_groups(groups, 3)
    assert fold_seed({"fold_seed": None}) is None and fold_seed({"fold_seed": 7}) == 7
    assert "data.split.fold_seed=x" in _refusal("data.split.fold_seed=x")
