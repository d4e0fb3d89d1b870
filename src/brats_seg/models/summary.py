"""The model zoo at a glance: every model config's parameters, trainable parameters, GFLOPs and
divisor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from brats_seg.errors import ConfigError

FLOPS_NOTE = (
    "GFLOPs = 2 x multiply-accumulates of the conv, transposed-conv and dense layers "
    "for one slice; "
    "bias, batch norm, activations, pooling and upsampling are not counted."
)


@dataclass(frozen=True)
class ModelRow:
    name: str
    family: str
    params: int
    trainable: int
    gflops: float
    divisor: int


def selected_names(names: Any) -> list[str]:
    """The config names to list: all of them for null, else the given ones (checked)."""
    from brats_seg.models import model_config_names

    available = model_config_names()
    if names is None:
        return available
    chosen = [names] if isinstance(names, str) else [str(name) for name in names]
    if not chosen:
        raise ConfigError("option names selects no model config (use null for all)")
    unknown = [name for name in chosen if name not in available]
    if unknown:
        raise ConfigError(
            f"option names: unknown model config(s) {', '.join(unknown)} "
            f"(available: {', '.join(available)})"
        )
    return chosen


def measure(name: str, input_shape: tuple[int, int, int], num_classes: int) -> ModelRow:
    """Build one model config at `input_shape` and measure it."""
    import keras

    from brats_seg.models import build_model, count_flops, load_model_config
    from brats_seg.models.registry import parse_model_config

    cfg = load_model_config(name)
    _, family, options = parse_model_config(cfg)
    keras.backend.clear_session()
    model = build_model(cfg, input_shape, num_classes)
    trainable = sum(_size(w) for w in model.trainable_weights)
    row = ModelRow(
        name, family, model.count_params(), trainable, count_flops(model) / 1e9, options.divisor()
    )
    keras.backend.clear_session()
    return row


def format_table(rows: list[ModelRow], input_shape: tuple[int, int, int]) -> str:
    height, width, channels = input_shape
    header = (
        "model",
        "family",
        "params",
        "trainable",
        f"GFLOPs/{height}x{width}x{channels}",
        "divisor",
    )
    cells = [header] + [
        (r.name, r.family, f"{r.params:,}", f"{r.trainable:,}", f"{r.gflops:.2f}", str(r.divisor))
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        left = [row[i].ljust(widths[i]) for i in range(2)]
        right = [row[i].rjust(widths[i]) for i in range(2, len(header))]
        lines.append("  ".join(left + right).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines + ["", FLOPS_NOTE])


def _size(weight) -> int:
    count = 1
    for dim in weight.shape:
        count *= int(dim)
    return count
