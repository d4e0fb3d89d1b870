"""The experiment table: one CSV row per completed run, appended under a file lock.

Several sweep jobs may finish at the same moment; the lock makes each append whole. ``brats-seg
table`` can rebuild everything from the run folders, so this file is a convenience, never the only
record.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from filelock import FileLock

from brats_seg.data.labels import NUM_CLASSES, REGIONS
from brats_seg.metrics.confusion import METRIC_NAMES

COLUMNS = (
    [
        "finished",
        "run_dir",
        "experiment_id",
        "model",
        "loss",
        "optimizer",
        "preprocessing",
        "params",
    ]
    + [f"{m}_{i}" for m in METRIC_NAMES for i in range(NUM_CLASSES)]
    + [f"{m}_col_ave" for m in METRIC_NAMES]
    + [f"{r}_dice_mean" for r in REGIONS]
)


def row_from_metrics(metrics: dict[str, Any], **fields: Any) -> dict[str, Any]:
    row = dict(fields)
    for m in METRIC_NAMES:
        for i, value in enumerate(metrics["per_class"][m]):
            row[f"{m}_{i}"] = value
        row[f"{m}_col_ave"] = metrics["col_ave"][m]
    for r in REGIONS:
        row[f"{r}_dice_mean"] = metrics["regions"][r]["dice_mean"]
    return row


def append_row(path: str | Path, row: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=120):
        new = not path.exists() or path.stat().st_size == 0
        buffer = io.StringIO()
        if not new and not _ends_with_newline(path):
            buffer.write("\n")  # a torn last line (a writer killed mid-row) stays apart from ours
        writer = csv.DictWriter(
            buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n"
        )
        if new:
            writer.writeheader()
        writer.writerow({k: _cell(row.get(k)) for k in COLUMNS})
        # One write call of a whole line: readers never see half a row.
        with path.open("a", newline="") as f:
            f.write(buffer.getvalue())
            f.flush()


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(-1, io.SEEK_END)
        return f.read(1) == b"\n"


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value
