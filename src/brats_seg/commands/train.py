"""brats-seg train: compose a run from the config groups, train it, evaluate it on held-out
patients."""

from __future__ import annotations

# A command line that works, shown when a mandatory option is missing.
EXAMPLE = "brats-seg train data=brats data.root=/path/to/BraTS2021"


def check_model_options(cfg) -> None:
    """The train options that need the model (checked with the others, before any work): the
    model's own options (brats_seg.models.options) and data.patch.size, whose sides must be
    multiples of the model's divisor."""
    from brats_seg.models.registry import check_patch_size, parse_model_config

    parse_model_config(cfg.model)  # types and checks the model's options
    check_patch_size(cfg.model, cfg.data.patch.size)


def check_train_options(cfg) -> None:
    """The train command's own checks: the model's (check_model_options) and the logger's."""
    from brats_seg.training.tracking import check_available

    check_model_options(cfg)
    check_available(cfg)


def _task(cfg) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from brats_seg.jobs.objective import objective_value, sweep_objective
    from brats_seg.jobs.train import train_and_evaluate
    from brats_seg.tf_import import import_tensorflow_quietly

    objective = sweep_objective(cfg)  # None unless this job is a trial of an Optuna search
    import_tensorflow_quietly()

    run_dir = HydraConfig.get().runtime.output_dir
    metrics = train_and_evaluate(cfg, run_dir)
    if objective is not None:
        return objective_value(run_dir, objective)
    # None for a non-chief worker of a multi-worker run (the chief evaluates) or a run without test
    # patients.
    return (metrics.get("col_ave") or {}).get("f1") if metrics else None


def main(argv: list[str]) -> int:
    from brats_seg.config import run_hydra_app
    from brats_seg.training.cluster import launched_as_non_chief

    if launched_as_non_chief():
        # Only the chief writes the run folder, Hydra's own files (.hydra/, train.log) included.
        # Hydra's parser takes its overrides in one run, so these join the user's (or come first).
        at = next((i for i, arg in enumerate(argv) if "=" in arg and not arg.startswith("-")), 0)
        argv = [*argv[:at], "hydra.output_subdir=null", "hydra/job_logging=stdout", *argv[at:]]
    run_hydra_app(
        _task, "train", "brats-seg train", argv, example=EXAMPLE, check=check_train_options
    )
    return 0
