"""brats-seg synth: write a synthetic BraTS-like data set as .nii.gz (BraTS 2021 names and
labels)."""

from __future__ import annotations

import time
from pathlib import Path

from brats_seg.errors import ConfigError

# A command line that works, shown when a mandatory option is missing.
EXAMPLE = "brats-seg synth out=outputs/synthetic cases=10"


def _task(cfg) -> None:
    from brats_seg.data.synthetic import validate_options, write_synthetic_dataset

    cases, shape = validate_options(cfg.cases, cfg.shape)
    if not cfg.out:
        raise ConfigError("out is empty: give the folder to write, e.g. out=outputs/synthetic")
    out = Path(str(cfg.out))
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out={out}: exists and is not a folder")
    started = time.perf_counter()
    write_synthetic_dataset(out, cases, shape, seed=cfg.seed, workers=cfg.workers)
    seconds = time.perf_counter() - started
    size = "x".join(str(s) for s in shape)
    print(
        f"wrote {cases} synthetic case{'s' if cases != 1 else ''} of {size} voxels "
        f"(seed {cfg.seed}) "
        f"to {out} in {seconds:.1f} s"
    )


def main(argv: list[str]) -> int:
    from brats_seg.config import run_hydra_app

    run_hydra_app(_task, "synth", "brats-seg synth", argv, example=EXAMPLE)
    return 0
