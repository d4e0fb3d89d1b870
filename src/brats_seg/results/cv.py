"""Summary of a cross-validation sweep: one row per fold and the mean +- sd over folds.

Every run folder under the sweep folder is one fold: its test patients' Dice and HD95 (the mean over
the fold's test cases), its training time (wall and CPU, from run.json) and its status. Only
completed folds enter the mean and the sample standard deviation (n - 1); the summary says how many
folds that is.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from brats_seg.atomic import write_json, write_text
from brats_seg.errors import ConfigError
from brats_seg.metrics.regions import REGIONS
from brats_seg.outputs import check_files_beside, files_beside
from brats_seg.runfolder import (
    COMPLETED,
    EDITED,
    RunFolder,
    config_difference,
    find_run_dirs,
)

CV_JSON = "cv_summary.json"
CV_MD = "cv_summary.md"


def fold_row(run_dir: Path) -> dict[str, Any]:
    """One fold's figures, read from its run folder."""
    folder = RunFolder(run_dir)
    info = folder.read() or {}
    cfg = folder.read_config_dict()
    split_cfg = (cfg.get("data") or {}).get("split") or {}
    row: dict[str, Any] = {
        "run": str(run_dir),
        "fold": split_cfg.get("fold") if split_cfg.get("folds") else None,
        "folds": split_cfg.get("folds"),
        "status": folder.effective_status(),
        "train_seconds": info.get("train_seconds"),
        "train_cpu_seconds": info.get("train_cpu_seconds"),
        "test_cases": [],
    }
    if row["status"] == COMPLETED and folder.config_path.exists() and folder.config_edited():
        row["status"] = EDITED  # its metrics belong to another configuration
    if row["status"] == COMPLETED and folder.metrics_path.exists():
        metrics = folder.read_metrics()
        patients = metrics.get("per_patient") or []
        row["test_cases"] = [p["case"] for p in patients]
        for region in REGIONS:
            for measure in ("dice", "hd95"):
                values = [p[region][measure] for p in patients if p[region][measure] is not None]
                row[f"{region}_{measure}"] = _mean(values)
        row["inference"] = metrics.get("inference")
    return row


# What may differ between the runs one summary averages: cv-summary's folds (and seeds).
FOLD_KEYS = ("data.split.fold", "seed")


def check_one_recipe(rows: list[dict[str, Any]], varying: tuple[str, ...], command: str) -> None:
    """Refuse to average completed runs whose configurations differ outside ``varying`` (another
    model, plane or recipe in the same folder), naming two of them and the first key."""
    done = [r for r in rows if r["status"] == COMPLETED]
    if len(done) < 2:
        return
    first = RunFolder(Path(done[0]["run"])).read_config_dict()
    for row in done[1:]:
        differ = config_difference(first, RunFolder(Path(row["run"])).read_config_dict(), varying)
        if differ:
            key, a, b = differ
            raise ConfigError(
                f"{command}: {done[0]['run']} and {row['run']} differ in {key} ({a!r} against "
                f"{b!r}), not only in {', '.join(varying)}: put the runs of one recipe in a "
                "folder of their own"
            )


def summarise_folds(rows: list[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in rows if r["status"] == COMPLETED and r.get("WT_dice") is not None]
    summary: dict[str, Any] = {"folds_completed": len(done), "folds_found": len(rows)}
    keys = [f"{r}_{m}" for m in ("dice", "hd95") for r in REGIONS] + [
        "train_seconds",
        "train_cpu_seconds",
    ]
    for key in keys:
        values = [r[key] for r in done if r.get(key) is not None]
        summary[key] = {"mean": _mean(values), "sd": _sd(values), "n": len(values)}
    return summary


def cv_summary(sweep_dir: Path, out: Path | None = None) -> dict[str, Any]:
    """Rows and summary of the runs under ``sweep_dir``; writes cv_summary.json and
    cv_summary.md."""
    if not sweep_dir.is_dir():
        raise ConfigError(f"cv-summary: {sweep_dir} is not a folder")
    out = out or sweep_dir
    check_files_beside(out, (CV_JSON, CV_MD), "cv-summary")
    run_dirs = find_run_dirs([sweep_dir])
    if not run_dirs:
        raise ConfigError(f"cv-summary: no run folders under {sweep_dir}")
    rows = sorted(
        (fold_row(d) for d in run_dirs), key=lambda r: (r["fold"] is None, r["fold"] or 0, r["run"])
    )
    check_one_recipe(rows, FOLD_KEYS, "cv-summary")
    result = {"sweep": str(sweep_dir), "rows": rows, "summary": summarise_folds(rows)}
    with files_beside(out, (CV_JSON, CV_MD), "cv-summary"):
        write_json(out / CV_JSON, result)
        write_text(out / CV_MD, to_markdown(result))
    return result


def to_markdown(result: dict[str, Any]) -> str:
    header = [
        "fold",
        "test patient(s)",
        "WT Dice",
        "TC Dice",
        "ET Dice",
        "WT HD95",
        "TC HD95",
        "ET HD95",
        "train (wall)",
        "train (CPU)",
        "status",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in result["rows"]:
        cells = ["" if r["fold"] is None else str(r["fold"]), ", ".join(r["test_cases"])]
        cells += [_fmt(r.get(f"{region}_dice")) for region in REGIONS]
        cells += [_fmt(r.get(f"{region}_hd95"), 1) for region in REGIONS]
        cells += [
            _minutes(r.get("train_seconds")),
            _minutes(r.get("train_cpu_seconds")),
            r["status"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    s = result["summary"]
    cells = [f"mean ± sd ({s['folds_completed']} folds)", ""]
    cells += [_pm(s[f"{region}_dice"]) for region in REGIONS]
    cells += [_pm(s[f"{region}_hd95"], 1) for region in REGIONS]
    cells += [_minutes(s["train_seconds"]["mean"]), _minutes(s["train_cpu_seconds"]["mean"]), ""]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else None


def _sd(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _pm(stat: dict[str, Any], digits: int = 3) -> str:
    if stat["mean"] is None:
        return ""
    return _fmt(stat["mean"], digits) + (
        "" if stat["sd"] is None else f" ± {_fmt(stat['sd'], digits)}"
    )


def _minutes(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds / 60:.1f} min"
