"""How the study's table names a run's loss, optimizer and preprocessing (no TensorFlow needed)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_LOSS_NAMES = {
    "dice": "dice_loss",
    "bce_dice": "bce_dice_loss",
    "soft_dice": "soft_dice_loss",
    "weighted": "weighted",
    "exp_log": "exp_log",
    "focal": "focal",
    "tversky": "tversky",
    "dice_ce": "dice_ce",
}
_OPTIMIZER_NAMES = {"adam": "adam", "adagrad": "Adagrad", "sgd": "sgd", "adamw": "adamw"}


def loss_label(loss_cfg: Mapping[str, Any]) -> str:
    """``ell_loss (0.7)``, ``bce_dice_loss``, ... as the study's loss column writes them."""
    name = loss_cfg["name"]
    if name == "ell":
        return f"ell_loss ({loss_cfg['alpha']:g})"
    power = loss_cfg.get("weight_power")
    if name == "weighted" and power not in (None, 1, 1.0) and loss_cfg.get("class_weights") is None:
        return f"weighted (weights ** {power:g})"
    return _LOSS_NAMES.get(name, name)


def optimizer_label(opt_cfg: Mapping[str, Any]) -> str:
    return _OPTIMIZER_NAMES.get(opt_cfg["name"], opt_cfg["name"])


def preprocessing_label(data_cfg: Mapping[str, Any]) -> str:
    """``4channel``, ``5channel``, or either with ``, croped HxW``."""
    pre = data_cfg.get("preprocess") or {}
    label = "5channel" if pre.get("fifth_channel") else "4channel"
    crop = pre.get("crop") or {}
    if crop.get("enabled"):
        label += f", croped {crop['size'][0]}x{crop['size'][1]}"
    return label
