"""brats-seg table DIR [DIR ...] [out=DIR] [printed=false]: the study's results table from run folders."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from brats_seg.errors import ConfigError, first_line


def main(argv: list[str]) -> int:
    from brats_seg.config import compose
    from brats_seg.results.table import write_table

    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        return 0
    dirs = [Path(a) for a in argv if "=" not in a]
    overrides = [a for a in argv if "=" in a]
    if not dirs:
        raise ConfigError("table: name at least one run or sweep folder (brats-seg table outputs/sweeps/study)")
    try:
        cfg = compose("table", overrides)
    except Exception as err:  # Hydra's override errors are already one readable sentence
        raise ConfigError(f"table: {first_line(err)}") from err
    out = Path(cfg.out) if cfg.out else dirs[0]
    rows = write_table(dirs, out, printed=bool(cfg.printed))
    counts = Counter(r.status for r in rows)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    print(f"{len(rows)} runs ({summary}); wrote {out / 'results.md'}, results.csv and results.png")
    return 0
