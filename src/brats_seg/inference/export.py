"""Export a run's best model as a TensorFlow SavedModel that plain TensorFlow can serve.

The run's models are built for one input size (the training slices'), but their layers are
convolutions, poolings and upsamplings that do not care about it. So the export clones the model
onto an input of any height and width (same weights) and exports that, with the serving signature
``serve(image: float32[batch, height, width, channels]) -> float32[batch, height, width, classes]``
(softmax probabilities). Height and width must be multiples of the model's divisor (2 ** pooling
levels). Should the clone fail for some model, the fixed training size is exported instead, and
export.json says so. The input is preprocessed slices, as `brats-seg predict` makes them
(export.json records the preprocessing)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from brats_seg.atomic import write_json
from brats_seg.config_schema import ExportFormat, choices
from brats_seg.data.labels import CLASS_NAMES
from brats_seg.errors import ConfigError
from brats_seg.outputs import staged_output
from brats_seg.runfolder import open_run

log = logging.getLogger(__name__)
FORMATS = choices(ExportFormat)
EXPORT_INFO = "export.json"


def any_size_model(model):
    """The model on an input of any height and width, sharing its weights; None if it cannot be
    cloned."""
    import keras

    channels = int(model.input_shape[-1])
    try:
        clone = keras.models.clone_model(
            model, input_tensors=keras.Input((None, None, channels), name="image")
        )
        clone.set_weights(model.get_weights())
    # a layer bound to one size: fall back to the fixed size
    except Exception as err:  # noqa: BLE001
        log.warning(
            "cannot rebuild %s for any input size (%s); exporting its fixed size", model.name, err
        )
        return None
    return clone


def precision_info(model) -> dict[str, str]:
    """The dtype policy the model computes in (the run's ``trainer.precision`` as resolved when it
    was trained: ``mixed_bfloat16`` computes in bfloat16 with float32 weights) and the dtypes of its
    input and outputs."""
    policy = next((layer.dtype_policy for layer in model.layers if layer.weights), None)
    outputs = model.outputs
    return {
        "policy": policy.name if policy is not None else "float32",
        "compute_dtype": policy.compute_dtype if policy is not None else "float32",
        "variable_dtype": policy.variable_dtype if policy is not None else "float32",
        "output_dtypes": [str(getattr(t.dtype, "name", t.dtype)) for t in outputs],
    }


def outputs_info(model, height: int | None, width: int | None) -> list[dict[str, Any]]:
    """One entry per served output, in the SavedModel's order (``output_0``, ``output_1``, ...): the
    first is the prediction; a deep-supervised model (UNet 3+ with ``deep_supervision``) adds one
    side output per coarser decoder stage, upsampled to full size, used as a training loss only."""
    names = list(getattr(model, "output_names", None) or [])
    entries = []
    for index, _ in enumerate(model.outputs):
        entries.append(
            {
                "name": f"output_{index}",
                "layer": names[index] if index < len(names) else "",
                "shape": ["batch", height or "height", width or "width", len(CLASS_NAMES)],
                "meaning": "softmax probabilities per class"
                if index == 0
                else "deep-supervision side output (softmax; a training loss, not the prediction)",
            }
        )
    return entries


def export_run(
    run_dir: Path,
    out: Path,
    fmt: str = "savedmodel",
    *,
    allow_incomplete: bool = False,
    use_last_checkpoint: bool = False,
) -> dict[str, Any]:
    """Write the SavedModel of ``run_dir``'s best checkpoint to ``out`` with export.json; ``out``
    is new, empty or an earlier export (replaced whole), see outputs.py."""
    import tensorflow as tf

    from brats_seg.config_schema import to_plain
    from brats_seg.models.registry import divisor

    if fmt not in FORMATS:
        raise ConfigError(f"export: format={fmt} is not supported; use one of {', '.join(FORMATS)}")
    run = open_run(
        run_dir, allow_incomplete=allow_incomplete, use_last_checkpoint=use_last_checkpoint
    )
    cfg = run.cfg
    model = run.load_model()
    flexible = any_size_model(model)
    served = flexible if flexible is not None else model
    channels = int(model.input_shape[-1])
    height, width = (
        (None, None) if flexible is not None else tuple(int(d) for d in model.input_shape[1:3])
    )
    signature = [tf.TensorSpec((None, height, width, channels), tf.float32, name="image")]
    info = {
        "run": str(run_dir),
        "checkpoint": str(run.checkpoint),
        # the run's status, and what was allowed (allow_incomplete, last.keras)
        "run_check": run.record(),
        "format": "TensorFlow SavedModel (keras Model.export)",
        "signature": "serve / serving_default",
        "input": {
            "name": "image",
            "shape": ["batch", height or "height", width or "width", channels],
            "dtype": "float32",
            "any_size": flexible is not None,
            "size_multiple_of": divisor(cfg.model),
            "trained_on": list(model.input_shape[1:3]),
        },
        "output": {
            "shape": ["batch", height or "height", width or "width", len(CLASS_NAMES)],
            "meaning": "softmax probabilities per class",
            "classes": list(CLASS_NAMES),
        },
        "outputs": outputs_info(served, height, width),
        "precision": precision_info(served),
        "preprocessing": to_plain(cfg.data.preprocess),
    }
    with staged_output(out, "export") as tmp:
        saved = tmp / "savedmodel"
        served.export(str(saved), format="tf_saved_model", input_signature=signature, verbose=False)
        write_json(tmp / EXPORT_INFO, info)
    return info
