"""Compare two runs, or two groups of runs, patient by patient.

Each side is a run folder, a folder of runs (a sweep, say) or a glob of run folders; its completed
runs must share one configuration up to seed and fold (results/groups.py). A side's per-patient Dice
of a region is the mean over its runs that tested that patient. Over the patients both sides were
tested on, per region: the mean paired difference A - B, a percentile bootstrap 95% interval of it
(patients resampled), and the two-sided Wilcoxon signed-rank p (scipy.stats.wilcoxon). Patients
tested on one side only are named, and a comparison on too few patients says so."""

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
    MIN_WILCOXON_PAIRS,
    bootstrap_mean_ci,
    fmt_interval,
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
    )  # case -> region -> mean Dice


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
    side = Side(label=spec, runs=done)
    sums: dict[str, dict[str, list[float]]] = {}
    for r in done:
        for case, scores in r.per_patient.items():
            for region, value in scores.items():
                if value is not None and math.isfinite(value):
                    sums.setdefault(case, {}).setdefault(region, []).append(value)
    side.patients = {
        case: {region: float(np.mean(v)) for region, v in regions.items()}
        for case, regions in sums.items()
    }
    return side


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
    for region in REGIONS:
        pairs = [
            (a.patients[c][region], b.patients[c][region])
            for c in common
            if region in a.patients[c] and region in b.patients[c]
        ]
        diffs = [x - y for x, y in pairs]
        entry: dict[str, Any] = {
            "n": len(diffs),
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
            )
        result["regions"][region] = entry
    n = min(e["n"] for e in result["regions"].values())
    if 0 < n < MIN_WILCOXON_PAIRS:
        result["notes"].append(
            f"Too few patients for the test: {n} paired patient(s); with fewer than "
            f"{MIN_WILCOXON_PAIRS} the two-sided Wilcoxon signed-rank test cannot reach "
            "p < 0.05 whatever the differences, and the "
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
        "(mean over a side's runs), difference = A - B.",
        "",
        "| region | n | mean Dice A | mean Dice B | mean difference | bootstrap 95% CI "
        "| Wilcoxon p |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for region, e in result["regions"].items():
        ci = fmt_interval(*e["ci95"]) or "n/a"
        lines.append(
            f"| {region} | {e['n']} | {_num(e['mean_a'])} | {_num(e['mean_b'])} | "
            f"{_num(e['mean_difference'])} | {ci} | {_num(e['wilcoxon_p'])} |"
        )
    if result["notes"]:
        lines += [""] + [f"Note: {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"
