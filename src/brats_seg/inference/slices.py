"""Slice-wise prediction of a preprocessed volume: softmax probabilities or classes per slice.

Slices without a single non-zero voxel (outside the skull-stripped brain) are background without
running the model; every other slice of the run's plane (data.plane) is predicted, in batches. A
fully convolutional model (built with unknown H and W) sees only the brain's bounding box over all
slices, grown to the model's divisor grid of the whole slice (its edges on multiples of the divisor,
as the slice's own poolings see them; past the bottom or right edge, background, as training pads a
slice whose size the divisor does not divide), and the probabilities are pasted back (background
outside the box); a model of fixed size sees the whole slice. Off the box the slice is background
(zeros) anyway, so the box gives the whole slice's prediction up to what deeper features see past
the box's edges: argmax agreement inside the brain, random weights, a real case
(tests/inference/test_brain_box.py). A model with per-slice statistics (instance normalisation) or
global pooling (ResUNet++'s squeeze-excitation) sees other statistics on the box; for those a
warning is logged. With ``tta`` the softmax is averaged over the slice and its row mirror, mapped
back before averaging: the left-right mirror (rows are the patient's left-right axis), or in a
sagittal slice, which has none, the anterior-posterior one, as training's flip (data/planes.py).
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

# Mirrorings of (B, H, W, C) batches: none, and rows (axis 1: left-right), the one flip that
# training augmentation applies. An anterior-posterior mirror shows the model a brain it never saw:
# with all four in-plane mirrorings, WT Dice of fold 0 of the real-data cross-validation fell from
# 0.823 (no TTA) to 0.743.
FLIPS: tuple[tuple[int, ...], ...] = ((), (1,))


def is_fully_convolutional(model) -> bool:
    shape = model.input_shape
    shape = shape[0] if isinstance(shape, list) else shape
    return shape[1] is None and shape[2] is None


def brain_box(x: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """Indices of the slices holding brain, and the bounding box ``(r0, r1, c0, c1)`` of the brain
    over them."""
    nonzero = np.any(x != 0, axis=-1)  # (Z, H, W)
    slices = np.flatnonzero(nonzero.any(axis=(1, 2)))
    if len(slices) == 0:
        return slices, None
    rows = np.flatnonzero(nonzero.any(axis=(0, 2)))
    cols = np.flatnonzero(nonzero.any(axis=(0, 1)))
    return slices, (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)


def padded_window(box: tuple[int, int, int, int], divisor: int) -> tuple[int, int, int, int]:
    """The box grown to the divisor grid of the slice: its start down and its end up to multiples of
    ``divisor`` (the end may reach past the slice's bottom or right edge)."""
    r0, r1, c0, c1 = box
    return (
        r0 - r0 % divisor,
        r1 + -r1 % divisor,
        c0 - c0 % divisor,
        c1 + -c1 % divisor,
    )


# Layers whose output at a pixel depends on statistics of the whole input: on the brain's box they
# see other statistics than on the whole slice.
WHOLE_INPUT_LAYERS = (
    "GroupNormalization",
    "LayerNormalization",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
)


def whole_input_layers(model) -> list[str]:
    """Names of the model's layers that normalise or pool over the whole input."""
    found = []
    stack = list(model.layers)
    while stack:
        layer = stack.pop(0)
        if type(layer).__name__ in WHOLE_INPUT_LAYERS:
            found.append(layer.name)
        stack.extend(getattr(layer, "layers", []) or [])
    return found


def _window(x: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """``x[:, r0:r1, c0:c1]`` with zeros wherever the window reaches past the slices."""
    r0, r1, c0, c1 = window
    out = np.zeros((x.shape[0], r1 - r0, c1 - c0) + x.shape[3:], dtype=np.float32)
    sr0, sr1, sc0, sc1 = max(r0, 0), min(r1, x.shape[1]), max(c0, 0), min(c1, x.shape[2])
    out[:, sr0 - r0 : sr1 - r0, sc0 - c0 : sc1 - c0] = x[:, sr0:sr1, sc0:sc1]
    return out


def _softmax(model, batch: np.ndarray, tta: bool) -> np.ndarray:
    total = None
    for axes in FLIPS if tta else ((),):
        inputs = np.ascontiguousarray(np.flip(batch, axis=axes) if axes else batch)
        probs = model(inputs, training=False)
        if isinstance(probs, (list, tuple)):
            probs = probs[0]
        probs = np.asarray(probs, dtype=np.float32)
        probs = np.flip(probs, axis=axes) if axes else probs
        total = probs if total is None else total + probs
    return total / (len(FLIPS) if tta else 1)


def predict_probabilities(
    model,
    x: np.ndarray,
    batch_size: int = 16,
    *,
    divisor: int = 1,
    tta: bool,
    num_classes: int | None = None,
) -> np.ndarray:
    """Softmax (Z, H, W, K) float32 for a preprocessed volume ``x`` (Z, H, W, C); background 1 off
    the brain."""
    depth, height, width = x.shape[:3]
    if num_classes is None:
        num_classes = int(
            model.output_shape[0][-1]
            if isinstance(model.output_shape, list)
            else model.output_shape[-1]
        )
    out = np.zeros((depth, height, width, num_classes), dtype=np.float32)
    out[..., 0] = 1.0
    slices, box = brain_box(x)
    if box is None:
        return out
    windowed = is_fully_convolutional(model)
    window = padded_window(box, divisor) if windowed else (0, height, 0, width)
    if windowed and whole_input_layers(model):
        log.warning(
            "%s normalises or pools over its whole input (%s): predicted on the brain's box, "
            "its output differs from the whole slice's",
            model.name,
            ", ".join(whole_input_layers(model)[:3]),
        )
    r0, r1, c0, c1 = window
    sr0, sr1, sc0, sc1 = max(r0, 0), min(r1, height), max(c0, 0), min(c1, width)
    for start in range(0, len(slices), batch_size):
        idx = slices[start : start + batch_size]
        probs = _softmax(model, _window(x[idx], window), tta)
        out[idx, sr0:sr1, sc0:sc1] = probs[:, sr0 - r0 : sr1 - r0, sc0 - c0 : sc1 - c0]
    return out


def predict_slices(
    model, x: np.ndarray, batch_size: int = 16, *, divisor: int = 1, tta: bool
) -> np.ndarray:
    """Class map (Z, H, W) uint8 for a preprocessed volume ``x`` (Z, H, W, C): the argmax of the
    softmax."""
    probs = predict_probabilities(model, x, batch_size, divisor=divisor, tta=tta)
    return np.argmax(probs, axis=-1).astype(np.uint8)
