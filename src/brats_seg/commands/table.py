"""brats-seg table DIR [DIR ...] [out=DIR] [printed=false] [intervals=true]: the study's results
table from run folders (results.md/.csv/.png), and groups.md/.csv: runs that differ only by seed or
fold as mean ± sd (n)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def main(argv: list[str]) -> int:
    from brats_seg.commands.arguments import folders_and_options
    from brats_seg.results.table import write_table

    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        return 0
    dirs, cfg = folders_and_options("table", argv, "outputs/sweeps/study")
    out = Path(cfg.out) if cfg.out else dirs[0]
    intervals = cfg.bootstrap if cfg.intervals else 0
    rows = write_table(dirs, out, printed=bool(cfg.printed), intervals=intervals)
    counts = Counter(r.status for r in rows)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    print(f"{len(rows)} runs ({summary}); wrote {out / 'results.md'}, results.csv and results.png")
    from brats_seg.results.table import group_rows

    sizes = [len(g) for g in group_rows(rows)]
    print(
        f"{len(sizes)} group(s) of runs that differ only by seed or fold "
        f"(largest: {max(sizes)} runs); "
        f"wrote {out / 'groups.md'} and groups.csv"
    )
    return 0
