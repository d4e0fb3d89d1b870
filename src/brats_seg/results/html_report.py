"""One self-contained HTML page of a sweep (brats-seg report): the results table, bar charts with
intervals, per-patient box plots, learning curves and each experiment's prediction of one test
slice.

Every image is embedded as base64 PNG; the page loads nothing from anywhere. An "experiment" is a
group of runs that differ only by seed or fold (results/groups.py).
"""

from __future__ import annotations

import base64
import html
import logging
import math
from pathlib import Path

import numpy as np

from brats_seg.atomic import write_text
from brats_seg.outputs import check_files_beside, files_beside
from brats_seg.results.stats import bootstrap_mean_ci, mean_sd
from brats_seg.results.table import (
    MEASURED,
    REGIONS,
    ResultRow,
    collect,
    cost_fronts,
    group_records,
    group_rows,
    table_records,
)
from brats_seg.runfolder import find_run_dirs

log = logging.getLogger(__name__)
REPORT_FILE = "report.html"

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 12px; margin-bottom: 1em; }
th, td { border: 1px solid #bbb; padding: 3px 6px; text-align: left; }
th { background: #eee; }
img { max-width: 100%; display: block; margin: 0.5em 0 1.5em 0; }
.note { color: #555; font-size: 13px; }
"""


def _label(members: list[ResultRow]) -> str:
    first = members[0]
    return first.experiment_id or first.title or first.run_dir.name


def _patient_means(members: list[ResultRow]) -> dict[str, dict[str, float]]:
    sums: dict[str, dict[str, list[float]]] = {}
    for r in members:
        for case, scores in r.per_patient.items():
            for region, value in scores.items():
                if value is not None and math.isfinite(value):
                    sums.setdefault(case, {}).setdefault(region, []).append(value)
    return {c: {k: float(np.mean(v)) for k, v in regions.items()} for c, regions in sums.items()}


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(records: list[dict[str, str]], skip: tuple[str, ...] = ()) -> str:
    if not records:
        return "<p>(none)</p>"
    header = [h for h in records[0] if h not in skip]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(rec[h])}</td>" for h in header) + "</tr>"
        for rec in records
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _metric_series(groups: list[list[ResultRow]]) -> dict[str, tuple[list, list, list]]:
    series = {}
    for name in MEASURED:
        values, low, high = [], [], []
        for members in groups:
            mean, sd, n = mean_sd(
                [r.measured.get(name) for r in members if r.status == "completed"]
            )
            values.append(mean)
            spread = sd if n > 1 else math.nan
            low.append(mean - spread)
            high.append(mean + spread)
        series[name] = (values, low, high)
    return series


def _region_series(
    groups: list[list[ResultRow]], samples: int
) -> dict[str, tuple[list, list, list]]:
    series = {}
    for region in REGIONS:
        values, low, high = [], [], []
        for members in groups:
            per_patient = [p[region] for p in _patient_means(members).values() if region in p]
            values.append(float(np.mean(per_patient)) if per_patient else math.nan)
            lo, hi = bootstrap_mean_ci(per_patient, samples=samples)
            low.append(lo)
            high.append(hi)
        series[f"{region} Dice"] = (values, low, high)
    return series


def _common_case(groups: list[list[ResultRow]]) -> tuple[str | None, list[ResultRow]]:
    """The test patient most experiments were tested on, and one completed run with a model per
    experiment."""
    from brats_seg.runfolder import BEST_CHECKPOINT, COMPLETED, RunFolder

    chosen: list[ResultRow] = []
    for members in groups:
        for r in members:
            if (
                r.status == COMPLETED
                and (RunFolder(r.run_dir).checkpoint_dir / BEST_CHECKPOINT).exists()
            ):
                chosen.append(r)
                break
    counts: dict[str, int] = {}
    for r in chosen:
        for case in r.per_patient:
            counts[case] = counts.get(case, 0) + 1
    if not counts:
        return None, chosen
    return sorted(counts, key=lambda c: (-counts[c], c))[0], chosen


def _overlay_section(groups: list[list[ResultRow]]) -> str:
    """Each experiment's model run on one slice of one test patient (the slice with the most
    tumour)."""
    from brats_seg.data.dataset import prepare_data
    from brats_seg.data.discovery import FLAIR_CHANNEL
    from brats_seg.data.preprocess import on_cached_grid
    from brats_seg.errors import RunError
    from brats_seg.inference.slices import predict_slices
    from brats_seg.runfolder import open_run
    from brats_seg.viz.report_figures import overlay_row

    case, runs = _common_case(groups)
    if case is None:
        return "<p class='note'>No completed run with a saved model: no overlay.</p>"
    predictions, truth_panel, z, notes = [], None, None, []
    for r in runs:
        try:
            run = open_run(r.run_dir)
        except RunError as err:  # damaged or edited: the rest of the page stands
            notes.append(f"{_label([r])}: not shown ({str(err).splitlines()[0]})")
            continue
        cfg = run.cfg
        try:
            x, y_full, meta = prepare_data(cfg.data).load_volume(case)
        # a run whose data is gone keeps the rest of the page
        except Exception as err:  # noqa: BLE001
            notes.append(f"{_label([r])}: cannot read {case} ({str(err).splitlines()[0]})")
            continue
        plane = str(cfg.data.plane)  # open_run completes an older run's data node
        truth = on_cached_grid(y_full, meta.get("crop_box"), plane)
        if z is None:
            z = int(np.argmax((truth > 0).reshape(truth.shape[0], -1).sum(axis=1)))
        pred = predict_slices(run.load_model(), x[z : z + 1], 1, tta=cfg.evaluate.tta)[0]
        image = np.asarray(x[z, ..., FLAIR_CHANNEL])
        if truth_panel is None:
            truth_panel = (image, np.asarray(truth[z]))
        label = _label([r]) + ("" if case in r.per_patient else " (not a test patient of this run)")
        predictions.append((label, image, pred))
    if truth_panel is None:
        return "<p class='note'>" + html.escape("; ".join(notes)) + "</p>"
    png = overlay_row(
        f"{case}, axial slice {z}: truth and each experiment's prediction", truth_panel, predictions
    )
    text = _img(png, f"overlays of {case} slice {z}")
    if notes:
        text += "<p class='note'>" + html.escape("; ".join(notes)) + "</p>"
    return text


def _cost_section(rows: list[ResultRow]) -> str:
    """Each run's mean WT Dice against its seconds per test case and its training seconds, with
    the Pareto front (no other run has a higher Dice for fewer seconds) marked."""
    from brats_seg.results.table import wt_dice
    from brats_seg.viz.report_figures import cost_scatter

    fronts = cost_fronts(rows)
    labels = [_label([r]) for r in rows]
    png = cost_scatter(
        labels,
        [wt_dice(r) for r in rows],
        {
            "seconds per test case": ([r.seconds_per_case for r in rows], fronts["s/case"]),
            "training seconds": ([r.train_seconds for r in rows], fronts["train s"]),
        },
    )
    devices = sorted({r.device for r in rows if r.device})
    note = (
        "Red: the Pareto front, the runs no other run beats on both Dice and seconds. Seconds per "
        "case: the evaluation's wall time per test patient (reading, model with TTA, "
        "post-processing, scoring); training: the seconds of the epochs each run kept. "
        + (f"Evaluated on {'; '.join(devices)}." if devices else "")
    )
    return _img(png, "Dice against cost") + f"<p class='note'>{html.escape(note)}</p>"


def _data_curve_section(paths: list[Path]) -> list[str]:
    """Quality against the number of training patients, when the runs include learning-curve
    draws (results/learning_curve.py); nothing otherwise."""
    from brats_seg.results.learning_curve import curve_png, draw_row, interval_text, summarise_curve

    rows = [r for r in (draw_row(d) for d in find_run_dirs(paths)) if r is not None]
    if not rows:
        return []
    points = summarise_curve(rows)
    records = [
        {
            "training patients": str(p["train_patients"]),
            "draws": str(p["draws"]),
            **{f"{region} Dice (95% CI)": interval_text(p[f"{region}_dice"]) for region in REGIONS},
        }
        for p in points
    ]
    note = (
        "Each draw trains on N patients and is scored on every other patient's whole volume; the "
        "point is the mean over draws, the interval Student's t over the draw means."
    )
    return [
        "<h2>Quality against the number of training patients</h2>",
        _table(records),
        _img(curve_png(points), "quality against training patients"),
        f"<p class='note'>{html.escape(note)}</p>",
    ]


def build_report(paths: list[Path], samples: int = 2000, overlays: bool = True) -> str:
    """The HTML page of the runs under ``paths``."""
    from brats_seg.runfolder import RunFolder
    from brats_seg.viz.report_figures import grouped_bars, learning_curves_grid, patient_boxes

    rows = collect(paths)
    groups = group_rows(rows)
    labels = [_label(g) for g in groups]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>brats-seg report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>brats-seg report</h1>",
        f"<p class='note'>{len(rows)} run(s) in {len(groups)} experiment(s) from "
        f"{html.escape(', '.join(map(str, paths)))}. An experiment is the runs that differ only "
        "by seed or fold.</p>",
        "<h2>Results</h2>",
        _table(table_records(rows, printed=False), skip=("run",)),
        "<h2>Dice against cost</h2>",
        _cost_section(rows),
        "<h2>Experiments across seeds and folds (mean ± sd, n)</h2>",
        _table(group_records(rows), skip=("runs folders",)),
        "<h2>The study's four metrics</h2>",
        _img(
            grouped_bars(
                labels,
                _metric_series(groups),
                "Col Ave metrics (pooled pixels) per experiment",
                "value",
                "error bars: ± sd over the experiment's runs, where it has several",
            ),
            "four metrics",
        ),
        "<h2>Region Dice</h2>",
        _img(
            grouped_bars(
                labels,
                _region_series(groups, samples),
                "mean region Dice over test patients",
                "Dice",
                "error bars: bootstrap 95% interval over test patients",
            ),
            "region Dice",
        ),
        "<h2>Per-patient Dice</h2>",
    ]
    per_region: dict[str, list[list[float]]] = {region: [] for region in REGIONS}
    for members in groups:
        means = _patient_means(members)
        for region in REGIONS:
            per_region[region].append([p[region] for p in means.values() if region in p])
    parts.append(_img(patient_boxes(labels, per_region), "per-patient box plots"))
    parts.append("<h2>Learning curves</h2>")
    panels = [
        (
            label,
            [h for h in (RunFolder(r.run_dir).read_history() for r in members) if h],
        )
        for label, members in zip(labels, groups, strict=True)
    ]
    parts.append(_img(learning_curves_grid(panels), "learning curves"))
    parts += _data_curve_section(paths)
    if overlays:
        parts.append("<h2>One test slice, every experiment</h2>")
        parts.append(_overlay_section(groups))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(paths: list[Path], out: Path, samples: int = 2000, overlays: bool = True) -> Path:
    check_files_beside(out, [REPORT_FILE], "report")
    page = build_report(paths, samples=samples, overlays=overlays)
    with files_beside(out, [REPORT_FILE], "report"):
        write_text(out / REPORT_FILE, page)
    return out / REPORT_FILE
