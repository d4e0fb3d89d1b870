"""Keras optimizers and learning-rate schedules from the composed ``optimizer`` config node.

Options (configs/optimizer/*.yaml): ``name`` (adam | adagrad | sgd | adamw), ``lr``,
``weight_decay`` (null or >= 0; required for adamw), ``momentum`` and ``nesterov`` (sgd),
``initial_accumulator_value`` (adagrad) and ``schedule`` with ``name`` constant | cosine | plateau,
``min_lr``, ``factor``, ``patience``.
"""

from __future__ import annotations

from typing import Any

import keras

from brats_seg.config_schema import ScheduleName, choices, to_plain
from brats_seg.errors import ConfigError

_COMMON = ("name", "lr", "weight_decay", "schedule")
_OPTIONS: dict[str, tuple[str, ...]] = {
    "adam": _COMMON,
    "adagrad": (*_COMMON, "initial_accumulator_value"),
    "sgd": (*_COMMON, "momentum", "nesterov"),
    "adamw": _COMMON,
}
OPTIMIZER_NAMES: tuple[str, ...] = tuple(sorted(_OPTIONS))
SCHEDULE_NAMES: tuple[str, ...] = choices(ScheduleName)  # declared in the config schema
_SCHEDULE_OPTIONS = ("name", "min_lr", "factor", "patience")


def _optimizer_name(cfg: dict[str, Any]) -> str:
    """The optimizer's name, refused unless it is one of ours and its node holds only its
    options (the schema types an optimizer's keys, not which name they belong to)."""
    name = cfg.get("name")
    if name not in _OPTIONS:
        valid = ", ".join(f"optimizer={option}" for option in OPTIMIZER_NAMES)
        raise ConfigError(f"optimizer={name}: unknown optimizer (valid: {valid})")
    for where, keys, valid in (
        ("optimizer", cfg, _OPTIONS[name]),
        ("optimizer.schedule", cfg["schedule"], _SCHEDULE_OPTIONS),
    ):
        unknown = sorted(set(keys) - set(valid))
        if unknown:
            raise ConfigError(
                f"{where}.{unknown[0]}: not an option of optimizer={name} "
                f"(valid: {', '.join(valid)})"
            )
    return name


def _learning_rate(lr: float, schedule: dict[str, Any], steps_total: int | None):
    if schedule["name"] != "cosine":
        return lr
    # Not an option: the run's step count, computed by the fit.
    if steps_total is None or steps_total < 1:
        raise ConfigError(
            f"optimizer.schedule.name=cosine: needs the total number of training steps "
            f"(got {steps_total!r})"
        )
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=lr, decay_steps=steps_total, alpha=float(schedule["min_lr"]) / lr
    )


def _callbacks(schedule: dict[str, Any]) -> list[keras.callbacks.Callback]:
    if schedule["name"] != "plateau":
        return []
    return [
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss",
            factor=float(schedule["factor"]),
            patience=int(schedule["patience"]),
            min_lr=float(schedule["min_lr"]),
        )
    ]


def build_optimizer(
    opt_cfg: Any, steps_total: int | None
) -> tuple[keras.optimizers.Optimizer, list[keras.callbacks.Callback]]:
    """Optimizer named by ``opt_cfg.name`` and the callbacks its schedule needs.

    ``opt_cfg`` is the composed ``optimizer`` node: configs/optimizer/*.yaml hold every value and
    the schema (brats_seg.config_schema.OptimizerSchema and its rules) has checked them.
    ``steps_total`` (optimizer steps of the whole run) is needed only by the cosine schedule, which
    decays the learning rate from ``lr`` to ``schedule.min_lr``; ``plateau`` returns a
    ReduceLROnPlateau callback on ``val_loss``; ``constant`` keeps ``lr``.
    """
    cfg = to_plain(opt_cfg)
    name = _optimizer_name(cfg)
    lr = float(cfg["lr"])
    schedule = cfg["schedule"]
    learning_rate = _learning_rate(lr, schedule, steps_total)
    weight_decay = None if cfg["weight_decay"] is None else float(cfg["weight_decay"])
    if name == "adam":
        optimizer = keras.optimizers.Adam(learning_rate=learning_rate, weight_decay=weight_decay)
    elif name == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay)
    elif name == "adagrad":
        optimizer = keras.optimizers.Adagrad(
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            initial_accumulator_value=float(cfg["initial_accumulator_value"]),
        )
    else:
        optimizer = keras.optimizers.SGD(
            learning_rate=learning_rate,
            momentum=float(cfg["momentum"]),
            nesterov=bool(cfg["nesterov"]),
            weight_decay=weight_decay,
        )
    return optimizer, _callbacks(schedule)
