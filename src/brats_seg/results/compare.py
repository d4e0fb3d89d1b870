"""Compare two runs, or two groups of runs, patient by patient.

Each side is a run folder, a folder of runs (a sweep, say) or a glob of run folders; its completed
runs must share one configuration up to seed and fold (results/groups.py). A side's per-patient Dice
of a region is the mean over its runs that tested that patient, on the BraTS empty-region rule
whatever rule the runs were scored with: a run scored with ``empty_rule=nan`` records NaN where a
region is absent from both prediction and reference, and that NaN is paired as Dice 1 (the BraTS
rule), so a side that predicted no lesion where there is none is not dropped against a side that
hallucinated one. Over the patients both sides were tested on, per region: the mean paired
difference A - B, a percentile bootstrap 95% interval of it (patients resampled), and the two-sided
Wilcoxon signed-rank p (scipy.stats.wilcoxon). Every pair left out is listed with the reason, and a
region whose pairs cannot reach p < 0.05 (the test uses only the non-zero differences) says so."""

from __future__ import annotations

import glob
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brats_seg.data.labels import REGIONS
from brats_seg.errors import ConfigError
from brats_seg.results.stats import (
    BOOTSTRAP_SAMPLES,
    SIGNIFICANCE,
    bootstrap_mean_ci,
    fmt_interval,
    nonzero_count,
    smallest_wilcoxon_p,
    wilcoxon_p,
)
from brats_seg.results.table import ResultRow, read_run
from brats_seg.runfolder import find_run_dirs


@dataclass
class Side:
    label: str
    runs: list[ResultRow]
    patients: dict[str, dict[str, float]] = field(
        default_factory=dict
    )  # case -> region -> mean Dice on the BraTS rule
    # case -> region -> why this side has no Dice for it (the pair is dropped and listed)
    undefined: dict[str, dict[str, str]] = field(default_factory=dict)
    nan_rule_runs: int = 0  # runs scored with empty_rule=nan, their NaN read as Dice 1


def brats_rule_dice(value: float | None, empty_rule: str) -> float | None:
    """A per-patient Dice on the BraTS rule (both empty = 1, one empty = 0). Under the "nan" rule
    NaN (null in metrics.json) means the region is absent from prediction and reference, which the
    BraTS rule scores 1; one empty is 0 under both rules. None where the value is undefined under
    the run's own rule."""
    if value is not None and math.isfinite(value):
        return float(value)
    return 1.0 if empty_rule == "nan" else None


def _run_dirs(spec: str) -> list[Path]:
    if any(ch in spec for ch in "*?["):
        roots = [Path(p) for p in sorted(glob.glob(spec)) if Path(p).is_dir()]
        if not roots:
            raise ConfigError(f"compare: no folder matches {spec}")
    else:
        roots = [Path(spec)]
        if not roots[0].is_dir():
            raise ConfigError(f"compare: {spec} is not a folder")
    return sorted({d for d in find_run_dirs(roots)})


def load_side(spec: str) -> Side:
    """The completed runs named by ``spec`` and their per-patient Dice, averaged over runs."""
    rows = [read_run(d) for d in _run_dirs(spec)]
    done = [r for r in rows if r.status == "completed" and r.per_patient]
    if not done:
        raise ConfigError(
            f"compare: {spec} holds no completed run with per-patient scores "
            f"({len(rows)} run folder(s) found)"
        )
    if len({r.group for r in done}) > 1:
        names = sorted({r.experiment_id or r.run_dir.name for r in done})
        raise ConfigError(
            f"compare: {spec} holds runs of {len({r.group for r in done})} configurations "
            f"({', '.join(names[:6])}); name one group, e.g. a glob like '{spec}/e02*'"
        )
    side = Side(label=spec, runs=done, nan_rule_runs=sum(r.empty_rule == "nan" for r in done))
    sums: dict[str, dict[str, list[float]]] = {}
    for r in done:
        for case, scores in r.per_patient.items():
            sums.setdefault(case, {})
            for region in REGIONS:
                value = brats_rule_dice(scores.get(region), r.empty_rule)
                if value is None:
                    side.undefined.setdefault(case, {})[region] = (
                        f"run {r.run_dir} has no {region} Dice for it "
                        f"(scored with empty_rule={r.empty_rule})"
                    )
                else:
                    sums[case].setdefault(region, []).append(value)
    side.patients = {
        case: {
            region: float(np.mean(v))
            for region, v in regions.items()
            if region not in side.undefined.get(case, {})
        }
        for case, regions in sums.items()
    }
    return side


def _dropped(a: Side, b: Side, region: str) -> list[dict[str, str]]:
    """Every patient of either side left out of the pairs of ``region``, and why."""
    dropped = []
    for case in sorted(set(a.patients) | set(b.patients)):
        if case not in b.patients:
            reason = "tested on A only"
        elif case not in a.patients:
            reason = "tested on B only"
        else:
            why = [
                f"{name}: {side.undefined.get(case, {}).get(region, 'no Dice for it')}"
                for name, side in (("A", a), ("B", b))
                if region not in side.patients[case]
            ]
            if not why:
                continue
            reason = "; ".join(why)
        dropped.append({"case": case, "reason": reason})
    return dropped


def compare_sides(
    a: Side, b: Side, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> dict[str, Any]:
    common = sorted(set(a.patients) & set(b.patients))
    result: dict[str, Any] = {
        "a": {
            "label": a.label,
            "runs": [str(r.run_dir) for r in a.runs],
            "patients": sorted(a.patients),
        },
        "b": {
            "label": b.label,
            "runs": [str(r.run_dir) for r in b.runs],
            "patients": sorted(b.patients),
        },
        "common_patients": common,
        "only_a": sorted(set(a.patients) - set(b.patients)),
        "only_b": sorted(set(b.patients) - set(a.patients)),
        "regions": {},
        "notes": [],
    }
    if result["only_a"] or result["only_b"]:
        result["notes"].append(
            f"The test patients differ: A was tested on {len(a.patients)}, B on "
            f"{len(b.patients)}; only the {len(common)} both were tested on are compared "
            f"(A only: {', '.join(result['only_a']) or 'none'}; "
            f"B only: {', '.join(result['only_b']) or 'none'})."
        )
    if not common:
        result["notes"].append("No patient was tested on both sides: there is nothing to compare.")
    for name, side in (("A", a), ("B", b)):
        if side.nan_rule_runs:
            result["notes"].append(
                f"{name}: {side.nan_rule_runs} of {len(side.runs)} run(s) were scored with "
                "empty_rule=nan; their NaN Dice (region absent from prediction and reference) is "
                "paired as 1, the BraTS rule, like every other pair."
            )
    for region in REGIONS:
        pairs = [
            (a.patients[c][region], b.patients[c][region])
            for c in common
            if region in a.patients[c] and region in b.patients[c]
        ]
        diffs = [x - y for x, y in pairs]
        entry: dict[str, Any] = {
            "n": len(diffs),
            "nonzero": nonzero_count(diffs),
            "smallest_p": math.nan,
            "dropped": _dropped(a, b, region),
            "mean_a": math.nan,
            "mean_b": math.nan,
            "mean_difference": math.nan,
            "ci95": [math.nan, math.nan],
            "wilcoxon_p": math.nan,
        }
        if diffs:
            entry.update(
                mean_a=float(np.mean([x for x, _ in pairs])),
                mean_b=float(np.mean([y for _, y in pairs])),
                mean_difference=float(np.mean(diffs)),
                ci95=list(bootstrap_mean_ci(diffs, samples=samples, seed=seed)),
                wilcoxon_p=wilcoxon_p(diffs),
                smallest_p=smallest_wilcoxon_p(diffs),
            )
        result["regions"][region] = entry
        if entry["dropped"]:
            listed = "; ".join(f"{d['case']} ({d['reason']})" for d in entry["dropped"])
            result["notes"].append(
                f"{region}: {len(entry['dropped'])} patient(s) left out of the pairs: {listed}."
            )
        if diffs and not entry["smallest_p"] < SIGNIFICANCE:
            best = _num(entry["smallest_p"])
            result["notes"].append(
                f"{region}: Too few patients for the test: {entry['n']} paired patient(s), "
                f"{entry['nonzero']} with a non-zero difference (the Wilcoxon signed-rank test "
                f"uses only those); the smallest two-sided p they can give is {best}, so "
                f"p < {SIGNIFICANCE} is unreachable whatever the differences' signs, and the "
                "bootstrap interval rests on very few values."
            )
    return result


def _num(value: float, digits: int = 4) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def compare_text(result: dict[str, Any]) -> str:
    """The comparison as Markdown: what was compared, one row per region, then the notes."""
    a, b = result["a"], result["b"]
    lines = [
        f"A: {a['label']} ({len(a['runs'])} run(s), {len(a['patients'])} test patient(s))",
        f"B: {b['label']} ({len(b['runs'])} run(s), {len(b['patients'])} test patient(s))",
        f"Paired over {len(result['common_patients'])} patient(s) tested on both; per-patient Dice "
        "on the BraTS empty-region rule (mean over a side's runs), difference = A - B.",
        "",
        "| region | n | non-zero differences | mean Dice A | mean Dice B | mean difference "
        "| bootstrap 95% CI | Wilcoxon p |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for region, e in result["regions"].items():
        ci = fmt_interval(*e["ci95"]) or "n/a"
        lines.append(
            f"| {region} | {e['n']} | {e['nonzero']} | {_num(e['mean_a'])} | {_num(e['mean_b'])} | "
            f"{_num(e['mean_difference'])} | {ci} | {_num(e['wilcoxon_p'])} |"
        )
    if result["notes"]:
        lines += [""] + [f"Note: {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"
