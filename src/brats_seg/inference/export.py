"""Export a run's best model as a TensorFlow SavedModel that plain TensorFlow can serve, or as
ONNX or OpenVINO IR for those runtimes (format=onnx | openvino; see inference/backends.py, which
converts the same way for predict and evaluate).

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
    quantize: str | None = None,
    allow_incomplete: bool = False,
    use_last_checkpoint: bool = False,
) -> dict[str, Any]:
    """Write ``run_dir``'s best checkpoint to ``out`` in format ``fmt`` (FORMATS) with export.json;
    ``out`` is new, empty or an earlier export (replaced whole), see outputs.py."""
    if fmt not in FORMATS:
        raise ConfigError(f"export: format={fmt} is not supported; use one of {', '.join(FORMATS)}")
    if quantize is not None and fmt != "openvino":
        raise ConfigError(f"export: quantize={quantize} needs format=openvino (got format={fmt})")
    if fmt in RUNTIME_FORMATS:
        from brats_seg.inference.backends import INT8, runtime_module

        runtime_module(
            INT8 if quantize else RUNTIME_FORMATS[fmt]
        )  # a missing runtime is said before the model loads
    run = open_run(
        run_dir, allow_incomplete=allow_incomplete, use_last_checkpoint=use_last_checkpoint
    )
    model = run.load_model()
    if fmt == "savedmodel":
        return _export_savedmodel(run, model, out)
    return _export_runtime(run, model, out, fmt, quantize)


# The export formats that a runtime of backends.py serves, by that runtime.
RUNTIME_FORMATS = {"onnx": "onnxruntime", "openvino": "openvino"}


def _info(run, model, served, height, width, described: dict[str, Any]) -> dict[str, Any]:
    from brats_seg.config_schema import to_plain
    from brats_seg.models.registry import divisor

    channels = int(model.input_shape[-1])
    return {
        "run": str(run.path),
        "checkpoint": str(run.checkpoint),
        # the run's status, and what was allowed (allow_incomplete, last.keras)
        "run_check": run.record(),
        **described,
        "input": {
            "name": "image",
            "shape": ["batch", height or "height", width or "width", channels],
            "dtype": "float32",
            "any_size": height is None,
            "size_multiple_of": divisor(run.cfg.model),
            "trained_on": list(model.input_shape[1:3]),
        },
        "output": {
            "shape": ["batch", height or "height", width or "width", len(CLASS_NAMES)],
            "meaning": "softmax probabilities per class",
            "classes": list(CLASS_NAMES),
        },
        "outputs": outputs_info(served, height, width),
        "preprocessing": to_plain(run.cfg.data.preprocess),
    }


def _export_savedmodel(run, model, out: Path) -> dict[str, Any]:
    import tensorflow as tf

    flexible = any_size_model(model)
    served = flexible if flexible is not None else model
    channels = int(model.input_shape[-1])
    height, width = (
        (None, None) if flexible is not None else tuple(int(d) for d in model.input_shape[1:3])
    )
    signature = [tf.TensorSpec((None, height, width, channels), tf.float32, name="image")]
    info = _info(
        run,
        model,
        served,
        height,
        width,
        {
            "format": "TensorFlow SavedModel (keras Model.export)",
            "files": ["savedmodel"],
            "signature": "serve / serving_default",
        },
    )
    info["precision"] = precision_info(served)
    with staged_output(out, "export") as tmp:
        saved = tmp / "savedmodel"
        served.export(str(saved), format="tf_saved_model", input_signature=signature, verbose=False)
        write_json(tmp / EXPORT_INFO, info)
    return info


def _export_runtime(run, model, out: Path, fmt: str, quantize: str | None) -> dict[str, Any]:
    """ONNX or OpenVINO IR of the model's float32 copy (backends.export_model): for any height and
    width where the model traces so, else at its training size (export.json says which).
    ``quantize="int8"``: the OpenVINO model quantised, calibrated on the run's training slices."""
    from brats_seg.errors import RunError
    from brats_seg.inference.backends import (
        CALIBRATION_SLICES,
        MODEL_FILES,
        calibration_slices,
        export_model,
        training_cases,
    )
    from brats_seg.models.registry import any_size_copy

    flexible = any_size_copy(model, run.cfg.model)
    cases = training_cases(run.checkpoint) if quantize else []
    if quantize and not cases:
        raise RunError(f"{run.path}: quantize={quantize} needs the run's training patients")
    calibration = lambda: calibration_slices(run.cfg, cases, model, CALIBRATION_SLICES)  # noqa: E731
    kind = "openvino-int8" if quantize else fmt
    with staged_output(out, "export") as tmp:
        try:
            path = export_model(flexible, run.cfg.model, tmp, kind, calibration)
            served, height, width = flexible, None, None
        except RunError as err:
            if flexible is model:  # a fully convolutional model has no fixed size to fall back to
                raise
            log.warning("%s; exporting its training size", err)
            path = export_model(model, run.cfg.model, tmp, kind, calibration)
            served = model
            height, width = (int(d) for d in model.input_shape[1:3])
        described = {
            "format": {
                "onnx": "ONNX (keras Model.export, tf2onnx)",
                "openvino": "OpenVINO IR (keras Model.export)",
            }[fmt],
            "files": sorted(p.name for p in tmp.iterdir()),
            "model_file": MODEL_FILES[fmt],
            "input_name": _input_name(path, fmt),
        }
        info = _info(run, model, served, height, width, described)
        info["precision"] = {"compute_dtype": "float32", "trained_policy": precision_info(model)}
        if quantize:
            info["precision"]["quantized"] = {
                "to": quantize,
                "by": "NNCF post-training quantisation",
                "calibration_cases": cases,
                "calibration_slices": CALIBRATION_SLICES,
            }
        write_json(tmp / EXPORT_INFO, info)
    return info


def _input_name(path: Path, fmt: str) -> str:
    """The name the exported graph gives its input (the exporter may not keep ``image``)."""
    if fmt == "onnx":
        import onnx

        return onnx.load(str(path), load_external_data=False).graph.input[0].name
    import openvino

    return openvino.Core().read_model(str(path)).inputs[0].any_name
