"""The experiment table (outputs/experiments.csv).

Whole rows when several sweep jobs append at the same moment.
"""

from __future__ import annotations

import csv
import multiprocessing as mp
from pathlib import Path

import pytest

from brats_seg.results.experiments_table import COLUMNS, append_row

WRITERS = 6
ROWS_EACH = 25


def _append_many(path: str, writer: int, start) -> None:
    start.wait()
    for i in range(ROWS_EACH):
        # a long cell makes a torn or interleaved write visible
        append_row(
            path,
            {
                "run_dir": f"w{writer}-r{i}-" + "x" * 2000,
                "model": "unet",
                "params": writer * 1000 + i,
                "f1_col_ave": 0.5,
            },
        )


def test_concurrent_appends_keep_one_header_and_whole_rows(tmp_path: Path):
    path = tmp_path / "experiments.csv"
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    workers = [ctx.Process(target=_append_many, args=(str(path), w, start)) for w in range(WRITERS)]
    for p in workers:
        p.start()
    start.set()
    for p in workers:
        p.join(120)
        assert p.exitcode == 0

    lines = path.read_text().splitlines()
    assert len(lines) == 1 + WRITERS * ROWS_EACH
    assert lines[0] == ",".join(COLUMNS)
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert all(None not in row and len(row) == len(COLUMNS) for row in rows)
    seen = {row["run_dir"].split("-x")[0] for row in rows}
    assert seen == {f"w{w}-r{i}" for w in range(WRITERS) for i in range(ROWS_EACH)}
    assert all(row["run_dir"].endswith("x" * 2000) and row["f1_col_ave"] == "0.5" for row in rows)
    assert sorted(int(row["params"]) for row in rows) == sorted(
        w * 1000 + i for w in range(WRITERS) for i in range(ROWS_EACH)
    )


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_an_append_waits_while_another_job_holds_the_table_lock(tmp_path: Path):
    from filelock import FileLock

    path = tmp_path / "experiments.csv"
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    start.set()
    with FileLock(str(path) + ".lock"):
        writer = ctx.Process(target=_append_many, args=(str(path), 0, start))
        writer.start()
        writer.join(5)
        assert writer.is_alive() and not path.exists()
    writer.join(120)
    assert writer.exitcode == 0
    assert len(path.read_text().splitlines()) == 1 + ROWS_EACH
