"""brats-seg view run=RUN_DIR | predictions=DIR input=PATH [out=DIR] [open=true]: a folder with a
NiiVue page of each case's four modalities, truth and prediction, that opens from the disk."""

from __future__ import annotations

from pathlib import Path

from brats_seg.errors import ConfigError

# A command line that works, shown when a mandatory option is missing.
EXAMPLE = "brats-seg view predictions=outputs/predictions input=outputs/new-cases"


def check_sources(cfg) -> None:
    """One of run= and predictions=, and input= with predictions= (checked before any work)."""
    if cfg.run and cfg.predictions:
        raise ConfigError(
            f"run={cfg.run} and predictions={cfg.predictions}: give one of them, not both"
        )
    if not (cfg.run or cfg.predictions):
        raise ConfigError(
            f"give run=RUN_DIR (its test patients) or predictions=DIR input=PATH (e.g. {EXAMPLE})"
        )
    if cfg.predictions and not cfg.input:
        raise ConfigError(
            f"predictions={cfg.predictions} needs input=PATH, the cases they were predicted from"
        )


def _task(cfg) -> None:
    from brats_seg.config_schema import to_plain
    from brats_seg.results.viewer import default_out, view_predictions, view_run

    out = Path(cfg.out) if cfg.out else default_out(cfg.run, cfg.predictions)
    wanted = to_plain(cfg.cases)
    if cfg.run:
        result = view_run(
            Path(cfg.run),
            out,
            input_root=Path(cfg.input) if cfg.input else None,
            wanted=wanted,
            opacity=float(cfg.opacity),
            batch_size=int(cfg.batch_size),
            allow_incomplete=bool(cfg.allow_incomplete),
            use_last_checkpoint=bool(cfg.use_last_checkpoint),
        )
    else:
        result = view_predictions(
            Path(cfg.predictions),
            Path(cfg.input),
            out,
            wanted=wanted,
            opacity=float(cfg.opacity),
        )
    for note in result["notes"]:
        print(f"note: {note}")
    page = Path(result["out"]).resolve() / "index.html"
    size = sum(p.stat().st_size for p in page.parent.rglob("*") if p.is_file())
    print(
        f"wrote {page} ({len(result['cases'])} case(s), {size / 1e6:.1f} MB): open it in a "
        "browser with WebGL2; it needs no server or network"
    )
    if cfg.open:
        import webbrowser

        if not webbrowser.open(page.as_uri()):
            print(f"no web browser found: open {page.as_uri()} yourself")


def main(argv: list[str]) -> int:
    from brats_seg.config import run_hydra_app

    run_hydra_app(_task, "view", "brats-seg view", argv, example=EXAMPLE, check=check_sources)
    return 0
