"""Quality against the number of training patients: the summary of a learning-curve sweep.

A learning-curve sweep trains with ``data.split.train_patients=N`` and ``data.split.draw=r`` for
several N and draws (data/draws.py); each run tests on every patient it did not train on. Per
draw, the score is the mean Dice over that draw's held-out patients (several runs of one draw,
e.g. seeds, are averaged first). Per N, the point is the mean over draws and the 95% interval is
Student's t over the draw means (mean ± t(0.975, R-1) · sd / √R, cut to [0, 1]; none with one
draw). Only completed runs whose config.yaml is unedited enter; the others are listed with
their status. Completed runs that differ in anything but N, the draw and the seed (another plane,
model or recipe in the same folder) are refused rather than averaged.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from brats_seg.atomic import write_bytes, write_json, write_text
from brats_seg.errors import ConfigError
from brats_seg.metrics.regions import REGIONS
from brats_seg.outputs import check_files_beside, files_beside
from brats_seg.results.cv import check_one_recipe, fold_row
from brats_seg.runfolder import COMPLETED, RunFolder, find_run_dirs

CURVE_JSON = "learning_curve.json"
CURVE_MD = "learning_curve.md"
CURVE_PNG = "learning_curve.png"
CURVE_FILES = (CURVE_JSON, CURVE_MD, CURVE_PNG)
# What may differ between the runs of one curve.
DRAW_KEYS = ("data.split.train_patients", "data.split.draw", "seed")


def draw_row(run_dir: Path) -> dict[str, Any] | None:
    """One run's draw, training patients and held-out figures; None for a run that is not a
    learning-curve draw."""
    folder = RunFolder(run_dir)
    split_cfg = (folder.read_config_dict().get("data") or {}).get("split") or {}
    if split_cfg.get("train_patients") is None:
        return None
    row = fold_row(run_dir)
    row["train_patients"] = int(split_cfg["train_patients"])
    row["draw"] = int(split_cfg.get("draw", 0))
    row["train_cases"] = folder.read_split()["train"] if row["status"] == COMPLETED else []
    return row


def t_interval(values: list[float]) -> tuple[float | None, float | None]:
    """Student's t 95% interval of the mean; (None, None) below two values."""
    if len(values) < 2:
        return None, None
    from scipy import stats

    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    half = float(stats.t.ppf(0.975, len(values) - 1)) * sd / math.sqrt(len(values))
    return mean - half, mean + half


def summarise_curve(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per number of training patients: mean and 95% interval over draws, per region."""
    by_draw: dict[int, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["status"] == COMPLETED and r.get("WT_dice") is not None:
            by_draw[r["train_patients"]][r["draw"]].append(r)
    points = []
    for n in sorted(by_draw):
        point: dict[str, Any] = {"train_patients": n, "draws": len(by_draw[n])}
        for region in REGIONS:
            key = f"{region}_dice"
            draw_means = []
            for runs in by_draw[n].values():
                values = [r[key] for r in runs if r.get(key) is not None]
                if values:
                    draw_means.append(sum(values) / len(values))
            low, high = t_interval(draw_means)
            if low is not None:  # a Dice lies in [0, 1]; few draws make t's interval wider
                low, high = max(low, 0.0), min(high, 1.0)
            point[key] = {
                "mean": sum(draw_means) / len(draw_means) if draw_means else None,
                "low": low,
                "high": high,
                "n": len(draw_means),
            }
        points.append(point)
    return points


def learning_curve(sweep_dir: Path, out: Path | None = None) -> dict[str, Any]:
    """Rows and points of the draws under ``sweep_dir``; writes learning_curve.{json,md,png}."""
    if not sweep_dir.is_dir():
        raise ConfigError(f"learning-curve: {sweep_dir} is not a folder")
    out = out or sweep_dir
    check_files_beside(out, CURVE_FILES, "learning-curve")
    rows = [r for r in (draw_row(d) for d in find_run_dirs([sweep_dir])) if r is not None]
    if not rows:
        raise ConfigError(
            "learning-curve: no learning-curve runs (data.split.train_patients set) "
            f"under {sweep_dir}"
        )
    check_one_recipe(rows, DRAW_KEYS, "learning-curve")
    rows.sort(key=lambda r: (r["train_patients"], r["draw"], r["run"]))
    result = {"sweep": str(sweep_dir), "rows": rows, "points": summarise_curve(rows)}
    png = curve_png(result["points"])
    with files_beside(out, CURVE_FILES, "learning-curve"):
        write_json(out / CURVE_JSON, result)
        write_text(out / CURVE_MD, to_markdown(result))
        write_bytes(out / CURVE_PNG, png)
    return result


def curve_png(points: list[dict[str, Any]]) -> bytes:
    from brats_seg.viz.report_figures import data_curve

    return data_curve(points)


def to_markdown(result: dict[str, Any]) -> str:
    lines = [
        "| training patients | draws | WT Dice (95% CI) | TC Dice (95% CI) | ET Dice (95% CI) |",
        "|---|---|---|---|---|",
    ]
    for p in result["points"]:
        cells = [str(p["train_patients"]), str(p["draws"])]
        cells += [interval_text(p[f"{region}_dice"]) for region in REGIONS]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "| N | draw | trained on | held out | WT | TC | ET | status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        cells = [
            str(r["train_patients"]),
            str(r["draw"]),
            ", ".join(r["train_cases"]),
            ", ".join(r["test_cases"]),
        ]
        cells += ["" if r.get(f"{g}_dice") is None else f"{r[f'{g}_dice']:.3f}" for g in REGIONS]
        cells.append(r["status"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def interval_text(stat: dict[str, Any]) -> str:
    if stat["mean"] is None:
        return ""
    if stat["low"] is None:
        return f"{stat['mean']:.3f}"
    return f"{stat['mean']:.3f} ({stat['low']:.3f}-{stat['high']:.3f})"
