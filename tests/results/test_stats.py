"""Statistics across seeds and folds: grouping, mean ± sd, bootstrap intervals, the paired
comparison; and a real three-seed smoke sweep of two experiments through `brats-seg table` and
`brats-seg compare` (slow)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from brats_seg.results.compare import Side, compare_sides, compare_text
from brats_seg.results.groups import group_key, varying
from brats_seg.results.stats import bootstrap_mean_ci, fmt_mean_sd, mean_sd, wilcoxon_p
from brats_seg.results.table import ResultRow

from conftest import run_cli


def test_group_key_ignores_seeds_folds_and_paths_only():
    base = {
        "seed": 1,
        "paths": {"output_root": "/a"},
        "data": {"split": {"seed": 1, "fold": 0}, "name": "x"},
        "model": {"name": "unet"},
    }
    other_seed = {
        "seed": 2,
        "paths": {"output_root": "/b"},
        "data": {"split": {"seed": 2, "fold": 3}, "name": "x"},
        "model": {"name": "unet"},
    }
    other_model = {**base, "model": {"name": "unet3pp"}}
    assert group_key(base) == group_key(other_seed)
    assert group_key(base) != group_key(other_model)
    assert varying(other_seed) == {"seed": 2, "data.split.seed": 2, "data.split.fold": 3}


def test_mean_sd_and_its_format():
    mean, sd, n = mean_sd([0.5, 0.7, float("nan"), 0.9])
    assert (mean, n) == (pytest.approx(0.7), 3) and sd == pytest.approx(0.2)
    assert fmt_mean_sd(mean, sd, n) == "0.7000 ± 0.2000 (n=3)"
    assert fmt_mean_sd(*mean_sd([0.25])) == "0.2500 (n=1)"


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_patients():
    rng = np.random.default_rng(1)
    few = rng.normal(0.8, 0.1, size=8)
    many = rng.normal(0.8, 0.1, size=200)
    low_few, high_few = bootstrap_mean_ci(few, samples=4000)
    low_many, high_many = bootstrap_mean_ci(many, samples=4000)
    assert low_few < few.mean() < high_few and low_many < many.mean() < high_many
    assert high_many - low_many < high_few - low_few
    # about 1.96 standard errors each side for a large sample
    se = many.std(ddof=1) / math.sqrt(many.size)
    assert (high_many - low_many) == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert all(math.isnan(v) for v in bootstrap_mean_ci([0.5]))


def test_wilcoxon_p_is_scipys_exact_two_sided_value():
    # 8 positive differences of distinct sizes: exact two-sided p = 2 / 2**8
    assert wilcoxon_p([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]) == pytest.approx(2 / 256)
    assert math.isnan(wilcoxon_p([0.0, 0.0]))


def _side(label: str, patients: dict[str, float]) -> Side:
    row = ResultRow(run_dir=Path(label), status="completed")
    return Side(
        label=label,
        runs=[row],
        patients={c: {"WT": v, "TC": v, "ET": v} for c, v in patients.items()},
    )


def test_compare_pairs_common_patients_and_says_when_they_differ_or_are_too_few():
    a = _side("A", {f"P{i}": 0.8 + 0.01 * i for i in range(10)})
    b = _side("B", {**{f"P{i}": 0.7 for i in range(9)}, "Q": 0.1})
    result = compare_sides(a, b, samples=2000)
    assert result["common_patients"] == [f"P{i}" for i in range(9)]
    assert result["only_a"] == ["P9"] and result["only_b"] == ["Q"]
    wt = result["regions"]["WT"]
    assert wt["n"] == 9 and wt["mean_difference"] == pytest.approx(0.14)
    assert wt["ci95"][0] < 0.14 < wt["ci95"][1]
    assert wt["wilcoxon_p"] == pytest.approx(2 / 2**9)
    assert any("test patients differ" in note for note in result["notes"])
    assert not any("Too few" in note for note in result["notes"])
    few = compare_sides(
        _side("A", {"P1": 0.9, "P2": 0.8}), _side("B", {"P1": 0.5, "P2": 0.6}), samples=500
    )
    assert any("Too few patients" in note for note in few["notes"])
    assert "Too few patients" in compare_text(few)
    none = compare_sides(_side("A", {"P1": 0.9}), _side("B", {"P2": 0.5}), samples=500)
    assert any("nothing to compare" in note for note in none["notes"])


# ---- a real sweep: two experiments, three seeds each ----

EXPERIMENTS = ("e02_unet_nobridge", "e14_unet_nobridge_dropout")


@pytest.fixture(scope="module")
def seed_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("seeds") / "outputs"
    out.mkdir()
    result = run_cli(
        "train",
        "-m",
        f"experiment={','.join(EXPERIMENTS)}",
        "seed=1,2,3",
        "debug=smoke",
        "data.synth.cases=20",
        f"paths.output_root={out}",
        cwd=out.parent,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    yield out, out / "sweeps" / "smoke"
    for checkpoint in out.rglob("*.keras"):
        checkpoint.unlink()


@pytest.mark.slow
def test_table_groups_the_seeds_with_mean_sd_and_n(seed_sweep):
    out, sweep = seed_sweep
    result = run_cli(
        "table",
        str(sweep),
        f"out={out / 'table'}",
        "intervals=true",
        "bootstrap=2000",
        cwd=out.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 group(s)" in result.stdout
    with (out / "table" / "groups.csv").open() as f:
        groups = list(csv.DictReader(f))
    assert len(groups) == 2
    for group in groups:
        assert group["runs"] == "3 of 3 completed" and group["seeds / folds"].startswith(
            "data.split.seed="
        )
        mean, rest = group["WT Dice"].split(" ± ")
        assert 0.0 <= float(mean) <= 1.0 and rest.endswith("(n=3)")
    with (out / "table" / "results.csv").open() as f:
        runs = list(csv.DictReader(f))
    assert len(runs) == 6
    by_title: dict[str, list[float]] = {}
    for run in runs:
        by_title.setdefault(run["title"], []).append(float(run["WT Dice"]))
        low, high = (float(v) for v in run["WT Dice 95% CI"].strip("[]").split(","))
        assert low <= float(run["WT Dice"]) + 1e-9 and float(run["WT Dice"]) <= high + 1e-9
    for group in groups:
        values = by_title[group["title"]]
        assert float(group["WT Dice"].split(" ± ")[0]) == pytest.approx(np.mean(values), abs=1e-4)
        assert float(group["WT Dice"].split(" ± ")[1].split()[0]) == pytest.approx(
            np.std(values, ddof=1), abs=1e-4
        )


@pytest.mark.slow
def test_compare_two_experiments_over_their_seeds(seed_sweep):
    out, sweep = seed_sweep
    a, b = (str(sweep / f"{name}*") for name in EXPERIMENTS)
    result = run_cli("compare", a, b, f"out={out / 'compare'}", "bootstrap=2000", cwd=out.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| WT |" in result.stdout and "Wilcoxon p" in result.stdout
    report = json.loads((out / "compare" / "compare.json").read_text())
    assert len(report["a"]["runs"]) == 3 and len(report["b"]["runs"]) == 3
    n = report["regions"]["WT"]["n"]
    assert n == len(report["common_patients"]) > 0

    # the per-patient means, recomputed from the runs' metrics.json
    def side_means(runs):
        sums: dict[str, list[float]] = {}
        for run in runs:
            for p in json.loads((Path(run) / "metrics.json").read_text())["per_patient"]:
                sums.setdefault(p["case"], []).append(p["WT"]["dice"])
        return {c: np.mean(v) for c, v in sums.items()}

    ma, mb = side_means(report["a"]["runs"]), side_means(report["b"]["runs"])
    diffs = [ma[c] - mb[c] for c in report["common_patients"]]
    assert report["regions"]["WT"]["mean_difference"] == pytest.approx(np.mean(diffs), abs=1e-9)
    from scipy.stats import wilcoxon

    if any(d != 0 for d in diffs):
        assert report["regions"]["WT"]["wilcoxon_p"] == pytest.approx(wilcoxon(diffs).pvalue)
    # one run against a whole sweep of two configurations is refused in one line
    mixed = run_cli("compare", str(sweep), a, cwd=out.parent)
    assert mixed.returncode == 1 and "configurations" in mixed.stderr
