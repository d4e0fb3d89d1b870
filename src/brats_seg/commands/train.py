"""brats-seg train: compose a run from the config groups, train it, evaluate it on held-out patients."""

from __future__ import annotations


def _task(cfg) -> float:
    from hydra.core.hydra_config import HydraConfig

    from brats_seg.jobs.train import train_and_evaluate

    metrics = train_and_evaluate(cfg, HydraConfig.get().runtime.output_dir)
    return (metrics.get("col_ave") or {}).get("f1")  # None for a run without test patients


def main(argv: list[str]) -> int:
    from brats_seg.config import run_hydra_app

    run_hydra_app(_task, "train", "brats-seg train", argv)
    return 0
