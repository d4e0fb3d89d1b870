"""brats-seg eda: statistics and figures of a data set over the slices selected for training."""

from __future__ import annotations

from brats_seg.errors import ConfigError

# A command line that works, shown when a mandatory option is missing.
EXAMPLE = "brats-seg eda data=brats data.root=/path/to/BraTS2021"


def _task(cfg) -> None:
    from pathlib import Path

    from brats_seg.data.dataset import prepare_data
    from brats_seg.viz.eda import check_report_target, format_summary, run_eda

    if not cfg.out:
        raise ConfigError("out is empty: give the report folder, e.g. out=outputs/eda/brats")
    check_report_target(Path(str(cfg.out)))  # before the (possibly long) data preparation
    prepared = prepare_data(cfg.data)
    report = run_eda(
        prepared,
        str(cfg.out),
        overlays=cfg.overlays,
        montage_case=cfg.montage_case,
        gif=cfg.gif,
        seed=cfg.seed,
    )
    print(format_summary(report))


def main(argv: list[str]) -> int:
    from brats_seg.config import run_hydra_app

    run_hydra_app(_task, "eda", "brats-seg eda", argv, example=EXAMPLE)
    return 0
