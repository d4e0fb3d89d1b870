"""Keras optimizers and learning-rate schedules from the composed ``optimizer`` config node.

Options (configs/optimizer/*.yaml): ``name`` (adam | adagrad | sgd | adamw), ``lr``,
``weight_decay`` (null or >= 0; required for adamw), ``momentum`` and ``nesterov`` (sgd),
``initial_accumulator_value`` (adagrad) and ``schedule`` with ``name`` constant | cosine | plateau,
``min_lr``, ``factor``, ``patience``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras

from brats_seg.config_schema import to_plain
from brats_seg.errors import ConfigError

_COMMON = ("name", "lr", "weight_decay", "schedule")
_OPTIONS: dict[str, tuple[str, ...]] = {
    "adam": _COMMON,
    "adagrad": (*_COMMON, "initial_accumulator_value"),
    "sgd": (*_COMMON, "momentum", "nesterov"),
    "adamw": _COMMON,
}
OPTIMIZER_NAMES: tuple[str, ...] = tuple(sorted(_OPTIONS))
SCHEDULE_NAMES: tuple[str, ...] = ("constant", "cosine", "plateau")
_SCHEDULE_OPTIONS = ("name", "min_lr", "factor", "patience")
SCHEDULE = "optimizer.schedule"

# How the study's table writes each optimizer.


def _optimizer_name(cfg: dict[str, Any]) -> str:
    name = cfg.get("name")
    if name not in _OPTIONS:
        valid = ", ".join(f"optimizer={option}" for option in OPTIMIZER_NAMES)
        raise ConfigError(f"optimizer={name}: unknown optimizer (valid: {valid})")
    unknown = sorted(set(cfg) - set(_OPTIONS[name]))
    if unknown:
        raise ConfigError(
            f"optimizer.{unknown[0]}: not an option of optimizer={name} "
            f"(valid: {', '.join(_OPTIONS[name])})"
        )
    return name


def _option(cfg: dict[str, Any], key: str, where: str = "optimizer") -> Any:
    """An option that the optimizer's config file sets: configs/optimizer/*.yaml holds every
    default."""
    if key not in cfg:
        raise ConfigError(f"{where}.{key}: missing (configs/optimizer/ sets it)")
    return cfg[key]


def _number(
    value: Any,
    key: str,
    low: float = 0.0,
    low_open: bool = False,
    high: float | None = None,
    high_open: bool = False,
) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ConfigError(f"optimizer.{key}: expected a number, got {value!r}")
    if (value <= low if low_open else value < low) or (
        high is not None and (value >= high if high_open else value > high)
    ):
        lower = f"{'>' if low_open else '>='} {low:g}"
        upper = "" if high is None else f" and {'<' if high_open else '<='} {high:g}"
        raise ConfigError(f"optimizer.{key}: must be {lower}{upper}, got {value!r}")
    return float(value)


def _schedule(cfg: dict[str, Any]) -> dict[str, Any]:
    schedule = _option(cfg, "schedule")
    if not isinstance(schedule, Mapping):
        raise ConfigError(f"optimizer.schedule: expected a mapping with a 'name', got {schedule!r}")
    if schedule.get("name") not in SCHEDULE_NAMES:
        raise ConfigError(
            f"optimizer.schedule.name={schedule.get('name')}: unknown schedule "
            f"(valid: {', '.join(SCHEDULE_NAMES)})"
        )
    unknown = sorted(set(schedule) - set(_SCHEDULE_OPTIONS))
    if unknown:
        raise ConfigError(
            f"optimizer.schedule.{unknown[0]}: unknown option "
            f"(valid: {', '.join(_SCHEDULE_OPTIONS)})"
        )
    return dict(schedule)


def _learning_rate(lr: float, schedule: dict[str, Any], steps_total: int | None):
    if schedule["name"] != "cosine":
        return lr
    if (
        steps_total is None
        or isinstance(steps_total, bool)
        or not isinstance(steps_total, int)
        or steps_total < 1
    ):
        raise ConfigError(
            f"optimizer.schedule.name=cosine: needs the total number of training steps "
            f"(got {steps_total!r})"
        )
    min_lr = _number(_option(schedule, "min_lr", SCHEDULE), "schedule.min_lr", high=lr)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=lr, decay_steps=steps_total, alpha=min_lr / lr
    )


def _callbacks(lr: float, schedule: dict[str, Any]) -> list[keras.callbacks.Callback]:
    if schedule["name"] != "plateau":
        return []
    factor = _number(
        _option(schedule, "factor", SCHEDULE),
        "schedule.factor",
        low_open=True,
        high=1.0,
        high_open=True,
    )
    patience = _option(schedule, "patience", SCHEDULE)
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
        raise ConfigError(
            f"optimizer.schedule.patience: expected an integer >= 0, got {patience!r}"
        )
    min_lr = _number(_option(schedule, "min_lr", SCHEDULE), "schedule.min_lr", high=lr)
    return [
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=factor, patience=patience, min_lr=min_lr
        )
    ]


def build_optimizer(
    opt_cfg: Any, steps_total: int | None
) -> tuple[keras.optimizers.Optimizer, list[keras.callbacks.Callback]]:
    """Optimizer named by ``opt_cfg.name`` and the callbacks its schedule needs.

    ``steps_total`` (optimizer steps of the whole run) is needed only by the cosine schedule, which
    decays the learning rate from ``lr`` to ``schedule.min_lr``; ``plateau`` returns a
    ReduceLROnPlateau callback on ``val_loss``; ``constant`` keeps ``lr``.
    """
    cfg = to_plain(opt_cfg)
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"optimizer: expected a mapping with a 'name', got {type(cfg).__name__}")
    cfg = dict(cfg)
    name = _optimizer_name(cfg)
    lr = _number(_option(cfg, "lr"), "lr", low_open=True)
    schedule = _schedule(cfg)
    learning_rate = _learning_rate(lr, schedule, steps_total)
    weight_decay = _option(cfg, "weight_decay")
    if weight_decay is not None:
        weight_decay = _number(weight_decay, "weight_decay")
    elif name == "adamw":
        raise ConfigError("optimizer.weight_decay: optimizer=adamw needs a number >= 0, got null")

    if name == "adam":
        optimizer = keras.optimizers.Adam(learning_rate=learning_rate, weight_decay=weight_decay)
    elif name == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay)
    elif name == "adagrad":
        accumulator = _number(
            _option(cfg, "initial_accumulator_value"), "initial_accumulator_value"
        )
        optimizer = keras.optimizers.Adagrad(
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            initial_accumulator_value=accumulator,
        )
    else:
        nesterov = _option(cfg, "nesterov")
        if not isinstance(nesterov, bool):
            raise ConfigError(f"optimizer.nesterov: expected true or false, got {nesterov!r}")
        momentum = _number(_option(cfg, "momentum"), "momentum", high=1.0, high_open=True)
        optimizer = keras.optimizers.SGD(
            learning_rate=learning_rate,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay,
        )
    return optimizer, _callbacks(lr, schedule)
