"""Patient-level split: grouping by content, rounding, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from brats_seg.data.split import content_fingerprint, split_cases, split_counts, split_fractions
from brats_seg.errors import DataError


def _refusal(*overrides: str) -> str:
    """The one line that composing and checking ``train`` with ``overrides`` ends in."""
    from brats_seg.config import check_options, compose, one_line

    with pytest.raises(Exception) as err:  # noqa: PT011  (Hydra's or ours: both one line)
        check_options(compose("train", list(overrides)))
    return one_line(err.value)


def fingerprints(n: int, duplicates: dict[str, str] | None = None) -> dict[str, str]:
    fps = {f"case{i:02d}": f"fp{i:02d}" for i in range(n)}
    for copy, original in (duplicates or {}).items():
        fps[copy] = fps[original]
    return fps


def test_counts_round_val_and_test_with_at_least_one():
    assert split_counts(3, (0.6, 0.2, 0.2)) == (1, 1, 1)
    assert split_counts(4, (0.6, 0.2, 0.2)) == (2, 1, 1)
    assert split_counts(10, (0.6, 0.2, 0.2)) == (6, 2, 2)
    assert split_counts(20, (0.7, 0.15, 0.15)) == (14, 3, 3)
    assert split_counts(7, (0.8, 0.1, 0.1)) == (5, 1, 1)
    # fractions that would leave train empty: train keeps one group
    assert split_counts(3, (0.0, 0.5, 0.5)) == (1, 1, 1)


def test_split_is_a_partition_deterministic_and_seed_dependent():
    fps = fingerprints(20)
    first = split_cases(fps, (0.6, 0.2, 0.2), seed=7)
    assert split_cases(fps, (0.6, 0.2, 0.2), seed=7) == first
    assert sorted(sum(first.values(), [])) == sorted(fps)
    assert [len(first[s]) for s in ("train", "val", "test")] == [12, 4, 4]
    others = [split_cases(fps, (0.6, 0.2, 0.2), seed=s) for s in range(5)]
    assert any(o["test"] != first["test"] for o in others)


def test_duplicates_share_a_split_for_every_seed():
    fps = fingerprints(6, {"copy_of_03": "case03", "copy_of_05": "case05"})
    for seed in range(25):
        split = split_cases(fps, (0.6, 0.2, 0.2), seed)
        where = {case: name for name, cases in split.items() for case in cases}
        assert where["copy_of_03"] == where["case03"]
        assert where["copy_of_05"] == where["case05"]
        assert all(split[name] for name in split)


def test_fewer_than_three_patients():
    with pytest.raises(
        DataError, match=r"found 2 distinct patient\(s\) in 3 case\(s\).*at least 3"
    ):
        split_cases(fingerprints(2, {"dup": "case00"}))


def test_split_options_are_validated():
    assert split_fractions({"train": 0.6, "val": 0.2, "test": 0.2, "seed": 3}) == (
        (0.6, 0.2, 0.2),
        3,
    )
    assert "add up to 0.8" in _refusal("data.split.val=0.1", "data.split.test=0.1")
    assert "data.split.val=-0.2" in _refusal("data.split.val=-0.2", "data.split.test=0.6")
    assert "data.split.seed=abc" in _refusal("data.split.seed=abc")


def test_fingerprint_depends_on_content_not_layout():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(6, 5, 4, 4)).astype(np.float32)
    fp = content_fingerprint(image)
    assert content_fingerprint(np.asfortranarray(image)) == fp
    assert content_fingerprint(image.astype(np.float64)) == fp
    changed = image.copy()
    changed[1, 2, 3, 0] += 1
    assert content_fingerprint(changed) != fp
    assert content_fingerprint(image.reshape(5, 6, 4, 4)) != fp


def test_patient_id_of_brats_2023_names():
    from brats_seg.data.split import patient_id

    assert patient_id("BraTS-GLI-00123-001") == "BraTS-GLI-00123"
    for task in ("MEN", "MET", "PED", "SSA"):
        assert patient_id(f"BraTS-{task}-00007-000") == f"BraTS-{task}-00007"
    for other in ("BraTS2021_00123", "Brats18_2013_2_1", "BraTS-GLI-0012-000", "BraTS-GLI-00123"):
        assert patient_id(other) is None


def test_timepoints_of_one_patient_share_a_split_and_link_with_content_duplicates():
    from brats_seg.data.split import group_cases

    fps = fingerprints(6)
    fps.update(
        {
            "BraTS-GLI-00005-000": "a",
            "BraTS-GLI-00005-001": "b",
            "BraTS-GLI-00005-002": "c",
            "BraTS2021_00005": "a",  # the first timepoint again, under its 2021 name
            "BraTS-MEN-00005-000": "d",
        }
    )  # another task: another patient
    groups = group_cases(fps)
    patient = [
        "BraTS-GLI-00005-000",
        "BraTS-GLI-00005-001",
        "BraTS-GLI-00005-002",
        "BraTS2021_00005",
    ]
    assert patient in groups
    assert ["BraTS-MEN-00005-000"] in groups and len(groups) == 8
    for seed in range(25):
        split = split_cases(fps, (0.6, 0.2, 0.2), seed)
        where = {case: name for name, cases in split.items() for case in cases}
        assert len({where[c] for c in fps if "00005" in c and "MEN" not in c}) == 1


def test_distinct_scans_keeps_one_of_each_duplicate():
    from brats_seg.data.split import distinct_scans

    fps = {"BraTS2021_00000": "a", "BraTS-GLI-00000-000": "a", "BraTS2021_00014": "b"}
    kept, dropped = distinct_scans(list(fps), fps)
    assert kept == ["BraTS-GLI-00000-000", "BraTS2021_00014"]
    assert dropped == {"BraTS2021_00000": "BraTS-GLI-00000-000"}
