"""The value a training job reports to an Optuna search: a score of its run on the validation
patients, chosen by ``tune.objective`` (configs/train.yaml)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from brats_seg.config_schema import objective_direction
from brats_seg.errors import ConfigError, RunError

log = logging.getLogger(__name__)


def sweep_objective(cfg: Any) -> str | None:
    """``tune.objective`` when this job is a trial of an Optuna search, else None.

    Refuses, before the job does any work, a search whose direction is not the objective's (the
    plain hydra/sweeper=optuna minimises unless told, which would pick the worst Dice).
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from brats_seg.jobs.study import direction_names

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    sweeper = HydraConfig.get().sweeper
    if "optuna" not in str(sweeper.get("_target_", "")).lower():
        return None
    objective = str(cfg.tune.objective)
    expected = objective_direction(objective)
    directions = direction_names(sweeper.direction)
    if directions != [expected]:
        raise ConfigError(
            f"hydra.sweeper.direction={','.join(directions)}: tune.objective={objective} is to "
            f"{expected}; use hydra/sweeper=resumable_optuna (it follows tune.objective) or set "
            f"hydra.sweeper.direction={expected}"
        )
    return objective


def objective_value(run_dir: str | Path, objective: str) -> float:
    """``objective`` of the completed run in ``run_dir``, on its validation patients.

    ``val_<region>_dice``: the mean Dice of the region over the validation patients, of the run's
    best checkpoint (the model its test metrics are of), scored as its test patients are.
    ``val_loss``: the lowest validation loss of any epoch (history.csv). A value that is not
    finite raises RunError, so the trial is recorded as failed rather than as a number.
    """
    from brats_seg.runfolder import open_run

    run = open_run(run_dir)
    val_cases = run.folder.read_split().get("val") or []
    if not val_cases:
        raise ConfigError(
            f"tune.objective={objective} scores the validation patients, and the split of "
            f"{run.path} has none: set data.split.val > 0"
        )
    if objective == "val_loss":
        losses = run.folder.read_history().get("val_loss") or []
        if not losses:
            raise RunError(f"{run.folder.history_path}: no val_loss logged")
        value = min(losses) if all(math.isfinite(v) for v in losses) else math.nan
    else:
        region = objective.split("_")[1].upper()
        value = _validation_metrics(run, val_cases)["regions"][region]["dice_mean"]
    if value is None or not math.isfinite(float(value)):
        raise RunError(f"{run.path}: {objective} is {value}, not a number a search can rank")
    log.info("%s: %s %.4f over %d validation patients", run.path, objective, value, len(val_cases))
    return float(value)


def _validation_metrics(run, val_cases: list[str]) -> dict[str, Any]:
    from brats_seg.data.dataset import prepare_data
    from brats_seg.inference.evaluate import evaluate_model, model_divisor

    cfg = run.cfg
    ev = cfg.evaluate
    metrics, _ = evaluate_model(
        run.load_model(),
        prepare_data(cfg.data),
        val_cases,
        empty_rule=ev.empty_rule,
        batch_size=int(ev.batch_size),
        n_overlays=0,
        lesionwise=False,
        divisor=model_divisor(cfg),
        tta=ev.tta,
        postprocess=ev.postprocess,
    )
    return metrics
