"""From a model config to a Keras model: the family registry, the config files and the input-size
check.

TF-free at import time: each family's builder module is imported only when a model is built.
"""

from __future__ import annotations

import importlib
import importlib.resources
from collections.abc import Mapping
from typing import Any

from brats_seg.config_schema import to_plain
from brats_seg.errors import ConfigError
from brats_seg.models.options import parse_options

CONFIG_PACKAGE = "brats_seg.configs"
CONFIG_GROUP = "model"

# family -> "module:function" of its builder; each builder takes (options, name, input_shape,
# num_classes).
BUILDERS: dict[str, str] = {
    "unet": "brats_seg.models.unet:build_unet",
    "unet3plus": "brats_seg.models.unet3plus:build_unet3plus",
    "resunetpp": "brats_seg.models.resunetpp:build_resunetpp",
    "attention_unet": "brats_seg.models.attention_unet:build_attention_unet",
}


def model_config_names() -> list[str]:
    """Names of the model configs shipped in brats_seg.configs/model, sorted.

    The family bases they extend live in configs/base/model and are not models."""
    folder = importlib.resources.files(CONFIG_PACKAGE).joinpath(CONFIG_GROUP)
    return sorted(
        entry.name[: -len(".yaml")] for entry in folder.iterdir() if entry.name.endswith(".yaml")
    )


def load_model_config(name: str) -> dict[str, Any]:
    """configs/model/<name>.yaml, with the family base it extends, as a plain dict."""
    from brats_seg.config import compose_group

    names = model_config_names()
    if name not in names:
        raise ConfigError(f"unknown model '{name}' (available: {', '.join(names)})")
    return to_plain(compose_group(CONFIG_GROUP, name))


def parse_model_config(model_cfg: Any) -> tuple[str, str, Any]:
    """Split a composed `model` node into (name, family, validated options)."""
    raw = to_plain(model_cfg)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"model config must be a mapping, got {type(raw).__name__}")
    raw = dict(raw)
    name = raw.pop("name", None)
    family = raw.pop("family", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"model config has no 'name' (keys: {', '.join(sorted(raw)) or 'none'})")
    if not isinstance(family, str):
        raise ConfigError(f"model {name}: config has no 'family' (one of {', '.join(BUILDERS)})")
    return name, family, parse_options(name, family, raw)


def divisor(model_cfg: Any) -> int:
    """What the model's input height and width must be divisible by."""
    _, _, options = parse_model_config(model_cfg)
    return options.divisor()


def check_patch_size(model_cfg: Any, size: Any) -> None:
    """Refuse ``data.patch.size`` (``[H, W]`` or None) unless its sides are multiples of the
    model's divisor: the one home of this rule, checked with the train options before any work."""
    if size is None:
        return
    name, _, options = parse_model_config(model_cfg)
    div = options.divisor()
    if any(int(side) % div for side in size):
        raise ConfigError(
            f"data.patch.size=[{','.join(str(side) for side in size)}]: must be multiples of "
            f"{div} (the divisor of model {name}), or null"
        )


def build_model(
    model_cfg: Any, input_shape: tuple[int | None, int | None, int], num_classes: int = 4
):
    """Build the Keras model described by the `model` config node for inputs of shape (H, W, C).

    H and W None build it fully convolutional: it then takes slices of any size that its divisor
    divides, with the same weights (and parameter count) as at any fixed size.
    """
    name, family, options = parse_model_config(model_cfg)
    shape = check_input_shape(name, input_shape, options.divisor())
    if not (isinstance(num_classes, int) and num_classes >= 1):
        raise ConfigError(
            f"model {name}: num_classes must be a positive integer, got {num_classes!r}"
        )
    return _builder(family)(options, name=name, input_shape=shape, num_classes=num_classes)


def any_size_copy(model, model_cfg: Any):
    """``model`` rebuilt fully convolutional, with its weights and its layers' precision policy;
    ``model`` itself when it already takes any size. The copy computes the same function: at the
    size ``model`` was built for, it gives the same outputs."""
    import keras

    shape = model.input_shape[0] if isinstance(model.input_shape, list) else model.input_shape
    if shape[1] is None and shape[2] is None:
        return model
    outputs = model.output_shape if isinstance(model.output_shape, list) else [model.output_shape]
    policy = next(layer.dtype_policy for layer in model.layers if layer.weights)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        copy = build_model(model_cfg, (None, None, int(shape[-1])), int(outputs[0][-1]))
    finally:
        keras.config.set_dtype_policy(previous)
    copy.set_weights(model.get_weights())
    return copy


def check_input_shape(name: str, input_shape: Any, div: int) -> tuple[int | None, int | None, int]:
    """Return (H, W, C) as ints (H and W may both be None), or raise a ConfigError naming the sizes
    that would work."""
    try:
        height, width, channels = input_shape
        if height is None and width is None:
            channels = int(channels)
            if channels < 1:
                raise ValueError
            return None, None, channels
        height, width, channels = int(height), int(width), int(channels)
    except (TypeError, ValueError):
        raise ConfigError(
            f"model {name}: input shape must be (H, W, C), got {input_shape!r}"
        ) from None
    if min(height, width, channels) < 1:
        raise ConfigError(
            f"model {name}: input shape must be positive, got {height}x{width}x{channels}"
        )
    bad = {axis: size for axis, size in (("H", height), ("W", width)) if size % div}
    if bad:
        raise ConfigError(
            f"model {name} needs H and W divisible by {div}; got {height}x{width} "
            f"({_nearest_hint(bad, div)})"
        )
    return height, width, channels


def _nearest_hint(bad: dict[str, int], div: int) -> str:
    def nearest(size: int) -> str:
        below, above = size // div * div, (size // div + 1) * div
        return f"{below} or {above}" if below else str(above)

    if len(set(bad.values())) == 1 and len(bad) == 2:
        return "nearest: " + nearest(next(iter(bad.values())))
    return "nearest: " + ", ".join(f"{axis} {nearest(size)}" for axis, size in bad.items())


def _builder(family: str):
    module_name, function = BUILDERS[family].split(":")
    return getattr(importlib.import_module(module_name), function)
