"""brats-seg report DIR [DIR ...] [out=DIR] [overlays=false]: one self-contained HTML page of run or
sweep folders (results table, bar charts with intervals, per-patient box plots, learning curves,
overlays)."""

from __future__ import annotations

from pathlib import Path


def main(argv: list[str]) -> int:
    from brats_seg.commands.arguments import folders_and_options
    from brats_seg.results.html_report import write_report

    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        return 0
    dirs, cfg = folders_and_options("report", argv, "outputs/sweeps/study")
    if cfg.overlays:  # the overlay row runs each experiment's model
        from brats_seg.tf_import import import_tensorflow_quietly

        import_tensorflow_quietly()
    out = Path(cfg.out) if cfg.out else dirs[0]
    page = write_report(dirs, out, samples=int(cfg.bootstrap), overlays=bool(cfg.overlays))
    print(f"wrote {page} ({page.stat().st_size / 1e6:.1f} MB, every image embedded)")
    return 0
