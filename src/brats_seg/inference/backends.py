"""The runtime that computes a model's forward pass in inference: Keras, ONNX Runtime, OpenVINO, or
OpenVINO quantised to int8.

``load_backend(model, model_cfg, checkpoint, name)`` returns the model itself for ``keras``, and
otherwise a ``ConvertedModel``: the same weights converted by Keras' own exporter
(``Model.export(format="onnx" | "openvino")``), which slices.py calls like the Keras model.

What is converted is a float32 copy of the model at the input size the Keras model takes (fixed,
or any height and width for a fully convolutional model): a model trained in mixed bfloat16 keeps
its float32 weights and computes in float32 there. OpenVINO is asked for float32 too; on a CPU
with bf16 it would otherwise compute in bf16 (argmax agreement 0.993 on a tiny random U-Net).

A conversion is cached in the run folder beside the checkpoint it came from,
``checkpoints/converted/<checkpoint>-<fixed|any-size>.<onnx|openvino>/``, with ``source.json``
recording the checkpoint's sha256, size and mtime and the converter's versions; it is rebuilt when
any of them changes. Each folder is written whole (atomic_dir). A run folder that cannot be written
is converted into a temporary folder for this command only.

``openvino_int8``: the OpenVINO model quantised after training by NNCF, calibrated on about 300
slices of the run's training patients (its data must be readable when it is first built); cached
like the others, its source.json also names the calibration patients.

``auto`` times Keras and every float32 runtime that is installed and converts (a few batches of
random slices at the model's trained size) and uses the fastest. The measurement is stored per
CPU beside the cache (``<checkpoint>-<fixed|any-size>.speed.json``) and reused. Int8 is timed too
only for a checkpoint whose int8 model passed its Dice check: ``evaluate run=RUN
backend=openvino_int8`` scores the run's test patients with int8 and with Keras, side by side, and
stores the per-region mean Dice of both in ``<stem>.int8-check.json``; it passes when no region's
mean Dice is lower by INT8_MAX_DICE_DROP or more.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brats_seg.atomic import atomic_dir, write_json
from brats_seg.config_schema import InferenceBackend, choices
from brats_seg.errors import ConfigError, RunError

log = logging.getLogger(__name__)

BACKENDS = choices(InferenceBackend)
# The runtimes a model can be converted to, and what Keras' exporter calls their format.
CONVERTED = {"onnxruntime": "onnx", "openvino": "openvino", "openvino_int8": "openvino-int8"}
# What auto times: the float32 runtimes, and int8 where its Dice check passed (below).
AUTO_CANDIDATES = ("onnxruntime", "openvino")
# Int8 changes the model's output: auto may use it only where its mean Dice of every region, on the
# run's test patients, is lower than Keras' by less than this (issue 27's rule).
INT8_MAX_DICE_DROP = 0.005
# The Python modules each runtime needs.
MODULES = {
    "onnxruntime": ("onnxruntime",),
    "openvino": ("openvino",),
    "openvino_int8": ("openvino", "nncf"),
}
INT8 = "openvino_int8"
# Int8 calibration: this many slices, spread evenly over the run's training patients.
CALIBRATION_SLICES = 300
KERAS = "keras"
INSTALL = "pip install 'brats-seg[runtimes]'"
CONVERTED_DIR = "converted"
SOURCE_FILE = "source.json"
MODEL_FILES = {"onnx": "model.onnx", "openvino": "model.xml", "openvino-int8": "model.xml"}
# auto: untimed warm-up calls, then timed calls (the median counts), of one batch each.
WARMUP_CALLS = 1
TIMED_CALLS = 3


def runtime_module(name: str):
    """The Python module of runtime ``name``; missing, a ConfigError saying what to install."""
    import importlib

    loaded = []
    for module in MODULES[name]:
        try:
            loaded.append(importlib.import_module(module))
        except ImportError:
            raise ConfigError(
                f"backend={name} needs {module}, which is not installed: {INSTALL}"
            ) from None
    return loaded[0]


def _installed(name: str) -> bool:
    try:
        runtime_module(name)
    except ConfigError:
        return False
    return True


def installed_runtimes() -> list[str]:
    """The float32 runtimes auto may time whose modules import here."""
    return [name for name in AUTO_CANDIDATES if _installed(name)]


def checkpoint_fingerprint(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    stat = path.stat()
    return {
        "checkpoint": path.name,
        "sha256": digest.hexdigest(),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
    }


def _versions(fmt: str) -> dict[str, str]:
    import keras

    versions = {"keras": keras.__version__}
    if fmt == "onnx":
        import tf2onnx

        versions["tf2onnx"] = tf2onnx.__version__
    else:
        import openvino

        versions["openvino"] = openvino.__version__
    if fmt == "openvino-int8":
        import nncf

        versions["nncf"] = nncf.__version__
    return versions


def _input_size(model) -> tuple[int | None, int | None, int]:
    shape = model.input_shape[0] if isinstance(model.input_shape, list) else model.input_shape
    return shape[1], shape[2], int(shape[3])


def float32_copy(model, model_cfg: Any):
    """The model rebuilt at its own input size with the float32 policy and its weights."""
    import keras

    from brats_seg.models.registry import build_model

    outputs = model.output_shape if isinstance(model.output_shape, list) else [model.output_shape]
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        copy = build_model(model_cfg, _input_size(model), int(outputs[0][-1]))
    finally:
        keras.config.set_dtype_policy(previous)
    copy.set_weights([np.asarray(w, dtype=np.float32) for w in model.get_weights()])
    return copy


def export_model(model, model_cfg: Any, target: Path, fmt: str, calibration: Any = None) -> Path:
    """Convert ``model`` (float32) to ``fmt`` in the new folder ``target``; the model file's path.
    A model that the exporter cannot trace is refused by name. ``openvino-int8``: the OpenVINO
    model quantised with ``calibration()``'s slices (quantize_int8)."""
    import tensorflow as tf

    from brats_seg.models.registry import parse_model_config

    height, width, channels = _input_size(model)
    signature = [tf.TensorSpec((None, height, width, channels), tf.float32, name="image")]
    path = target / MODEL_FILES[fmt]
    float32_path = target / "float32" / MODEL_FILES["openvino"] if fmt == "openvino-int8" else path
    try:
        float32_copy(model, model_cfg).export(
            str(float32_path),
            format="openvino" if fmt == "openvino-int8" else fmt,
            input_signature=signature,
            verbose=False,
        )
    except Exception as err:  # noqa: BLE001  (the exporter raises many kinds)
        name, family, _ = parse_model_config(model_cfg)
        size = "any height and width" if height is None else f"{height}x{width}"
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise RunError(
            f"model {name} (family {family}) cannot be exported to {fmt} for {size} "
            f"({type(err).__name__}{': ' + first[:160] if first else ''}); use backend=keras"
            + ("" if height is not None else ", or predict with brain_box=false")
        ) from None
    if float32_path != path:
        quantize_int8(float32_path, path, calibration())
        shutil.rmtree(float32_path.parent)
    return path


def quantize_int8(float32_xml: Path, target: Path, slices: np.ndarray) -> None:
    """Post-training int8 quantisation of an OpenVINO model with NNCF, calibrated on ``slices``
    (N, H, W, C), one slice per calibration sample."""
    import nncf
    import openvino

    model = openvino.Core().read_model(str(float32_xml))
    samples = [
        np.ascontiguousarray(slices[i : i + 1], dtype=np.float32) for i in range(len(slices))
    ]
    quantized = nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples))
    openvino.save_model(quantized, str(target))


def training_cases(checkpoint: Path) -> list[str]:
    """The training patients of the run that ``checkpoint`` (RUN/checkpoints/X.keras) belongs to."""
    from brats_seg.runfolder import RunFolder

    return sorted(RunFolder(checkpoint.parent.parent).read_split().get("train") or [])


def calibration_slices(run_cfg: Any, cases: list[str], model, n: int) -> np.ndarray:
    """About ``n`` cached training slices of ``cases`` (the run's selection: slices with brain or
    tumour), spread evenly over each patient, at the size the model takes."""
    from brats_seg.data.dataset import prepare_data
    from brats_seg.errors import BratsSegError

    try:
        prepared = prepare_data(run_cfg.data)
        per_case = max(1, -(-n // max(1, len(cases))))
        chosen = []
        for case_id in cases:
            x, _ = prepared.read_slices(case_id)
            picks = np.unique(np.linspace(0, len(x) - 1, min(per_case, len(x))).astype(int))
            chosen.append(np.asarray(x[picks], dtype=np.float32))
    except BratsSegError as err:
        raise RunError(
            f"backend={INT8} calibrates on the run's training patients, which cannot be read: {err}"
        ) from None
    slices = np.concatenate(chosen)[:n]
    height, width, _ = _input_size(model)
    if height is not None and slices.shape[1:3] != (height, width):
        raise RunError(
            f"backend={INT8}: the run's cached slices are {slices.shape[1]}x{slices.shape[2]}, "
            f"its model takes {height}x{width}"
        )
    return slices


def cache_stem(checkpoint: Path, model) -> str:
    height, _, _ = _input_size(model)
    return f"{checkpoint.stem}-{'any-size' if height is None else 'fixed'}"


def converted_model(
    model, model_cfg: Any, checkpoint: Path, fmt: str, cache_root: Path, run_cfg: Any = None
) -> Path:
    """The path of ``model`` converted to ``fmt``: the cached conversion when its source.json
    matches the checkpoint and the converter (and for int8 the calibration patients), else a new
    one (written whole). ``run_cfg``: the run's config, for int8 calibration."""
    folder = cache_root / f"{cache_stem(checkpoint, model)}.{fmt}"
    source = {**checkpoint_fingerprint(checkpoint), "versions": _versions(fmt)}
    calibration = None
    if fmt == "openvino-int8":
        cases = training_cases(checkpoint)
        if run_cfg is None or not cases:
            raise RunError(f"backend={INT8} needs the run's training patients to calibrate on")
        source["calibration"] = {"cases": cases, "slices": CALIBRATION_SLICES}
        calibration = lambda: calibration_slices(run_cfg, cases, model, CALIBRATION_SLICES)  # noqa: E731
    path = folder / MODEL_FILES[fmt]
    recorded = _read_json(folder / SOURCE_FILE)
    if recorded is not None and recorded.get("source") == source and path.is_file():
        return path
    if recorded is not None:
        log.info("%s: %s changed since it was converted; converting again", folder, checkpoint)
    started = time.perf_counter()
    with atomic_dir(folder) as tmp:
        export_model(model, model_cfg, tmp, fmt, calibration)
        write_json(
            tmp / SOURCE_FILE,
            {
                "source": source,
                "computes_in": "int8 (float32 where not quantised)" if calibration else "float32",
                "seconds": round(time.perf_counter() - started, 2),
            },
        )
    return path


def int8_check_path(cache_root: Path, checkpoint: Path, model) -> Path:
    return cache_root / f"{cache_stem(checkpoint, model)}.int8-check.json"


def record_int8_check(
    converted: ConvertedModel, checkpoint: Path, keras_metrics: dict, int8_metrics: dict
) -> dict[str, Any]:
    """Compare the per-region mean Dice of one evaluation in int8 with the same evaluation in
    Keras, store the result beside the int8 model (for auto) and return it."""
    regions = sorted(keras_metrics["regions"])
    keras_dice = {r: keras_metrics["regions"][r]["dice_mean"] for r in regions}
    int8_dice = {r: int8_metrics["regions"][r]["dice_mean"] for r in regions}
    drop = {r: round(keras_dice[r] - int8_dice[r], 6) for r in regions}
    check = {
        "sha256": checkpoint_fingerprint(checkpoint)["sha256"],
        "cases": list(int8_metrics["test_cases"]),
        "inference": {k: v for k, v in int8_metrics["inference"].items() if k != "backend"},
        "keras_dice": keras_dice,
        "int8_dice": int8_dice,
        "drop": drop,
        "max_drop": INT8_MAX_DICE_DROP,
        "passed": all(d < INT8_MAX_DICE_DROP for d in drop.values()),
    }
    cache_root = converted.path.parent.parent
    write_json(int8_check_path(cache_root, checkpoint, converted.keras_model), check)
    return check


def int8_allowed(cache_root: Path, checkpoint: Path, model) -> bool:
    """Whether this checkpoint's int8 model passed its Dice check (record_int8_check)."""
    check = _read_json(int8_check_path(cache_root, checkpoint, model)) or {}
    return check.get("passed") is True and (
        check.get("sha256") == checkpoint_fingerprint(checkpoint)["sha256"]
    )


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


@dataclass
class ConvertedModel:
    """A model's forward pass in another runtime, called like the Keras model by slices.py; its
    shapes and layers are the Keras model's."""

    keras_model: Any
    backend: str
    forward: Callable[[np.ndarray], np.ndarray]
    path: Path

    @property
    def name(self) -> str:
        return self.keras_model.name

    @property
    def input_shape(self):
        return self.keras_model.input_shape

    @property
    def output_shape(self):
        return self.keras_model.output_shape

    @property
    def layers(self):
        return self.keras_model.layers

    def __call__(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        return self.forward(np.ascontiguousarray(x, dtype=np.float32))


def _session(name: str, path: Path) -> Callable[[np.ndarray], np.ndarray]:
    runtime = runtime_module(name)
    if name == "onnxruntime":
        session = runtime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name
        first_output = session.get_outputs()[0].name
        return lambda x: session.run([first_output], {input_name: x})[0]
    compiled = runtime.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    output = compiled.outputs[0]
    return lambda x: np.array(request.infer({0: x})[output], copy=True)


def convert(
    model, model_cfg: Any, checkpoint: Path, name: str, cache_root: Path, run_cfg: Any = None
):
    """``model`` in runtime ``name`` (not keras), converted or taken from the cache."""
    runtime_module(name)  # a missing runtime is said before any conversion
    path = converted_model(model, model_cfg, checkpoint, CONVERTED[name], cache_root, run_cfg)
    return ConvertedModel(model, name, _session(name, path), path)


def time_forward(forward: Callable[[np.ndarray], Any], batch: np.ndarray) -> float:
    """Median seconds of one forward pass of ``batch``, after a warm-up."""
    for _ in range(WARMUP_CALLS):
        forward(batch)
    times = []
    for _ in range(TIMED_CALLS):
        start = time.perf_counter()
        forward(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed_batch(model, batch_size: int, divisor: int) -> np.ndarray:
    """Random preprocessed-like slices at the size the model was trained on (for a model of any
    size: 192x160, a brain box of a 240x240 slice, on the divisor grid)."""
    height, width, channels = _input_size(model)
    if height is None:
        height, width = (-(-192 // divisor) * divisor, -(-160 // divisor) * divisor)
    rng = np.random.default_rng(0)
    return rng.normal(size=(batch_size, height, width, channels)).astype(np.float32)


def choose_fastest(
    model,
    model_cfg: Any,
    checkpoint: Path,
    cache_root: Path,
    *,
    batch_size: int,
    divisor: int,
    run_cfg: Any = None,
):
    """``auto``: the fastest runtime on this CPU for this checkpoint, measured once and stored in
    ``<stem>.speed.json`` beside the cache (keyed by CPU, checkpoint, batch size and the runtimes
    timed: int8 joins them once its Dice check passed)."""
    from brats_seg.training.hardware import cpu_description

    record_path = cache_root / f"{cache_stem(checkpoint, model)}.speed.json"
    runtimes = installed_runtimes()
    if _installed(INT8) and int8_allowed(cache_root, checkpoint, model):
        runtimes.append(INT8)
    key = json.dumps(
        {
            "cpu": cpu_description(),
            "sha256": checkpoint_fingerprint(checkpoint)["sha256"],
            "batch_size": batch_size,
            "runtimes": ["keras", *runtimes],
        },
        sort_keys=True,
    )
    measured = (_read_json(record_path) or {}).get(key)
    if measured is not None:
        chosen = measured["chosen"]
        log.info("backend=auto: %s (measured %s)", chosen, measured["seconds_per_batch"])
        if chosen == KERAS:
            return model
        return convert(model, model_cfg, checkpoint, chosen, cache_root, run_cfg)
    candidates: dict[str, Any] = {"keras": model}
    for name in runtimes:
        try:
            candidates[name] = convert(model, model_cfg, checkpoint, name, cache_root, run_cfg)
        except RunError as err:
            log.warning("auto: %s left out: %s", name, err)
    batch = speed_batch(model, batch_size, divisor)
    seconds = {
        name: round(time_forward(lambda x, m=m: m(x, training=False), batch), 5)
        for name, m in candidates.items()
    }
    measured = {
        "seconds_per_batch": seconds,
        "batch_shape": list(batch.shape),
        "chosen": min(seconds, key=seconds.get),
    }
    stored = _read_json(record_path) or {}
    stored[key] = measured
    write_json(record_path, stored)
    log.info("backend=auto: %s (%s)", measured["chosen"], measured["seconds_per_batch"])
    return candidates[measured["chosen"]]


def load_backend(
    model,
    model_cfg: Any,
    checkpoint: Path,
    name: str,
    *,
    batch_size: int = 16,
    divisor: int = 1,
    run_cfg: Any = None,
):
    """``model`` computing in runtime ``name`` (one of BACKENDS): the Keras model itself for
    ``keras``, else a ConvertedModel. ``checkpoint``: the file the model was loaded from, beside
    which conversions are cached. ``run_cfg``: the run's config (int8 calibrates on its data)."""
    name = str(name)
    if name not in BACKENDS:
        raise ConfigError(f"backend={name}: must be one of {', '.join(BACKENDS)}")
    if name == KERAS:
        return model
    if name != "auto":
        runtime_module(name)  # a missing runtime is said before anything is written
    cache_root = Path(checkpoint).parent / CONVERTED_DIR
    if not _writable(cache_root):
        log.warning("%s cannot be written: converting for this command only", cache_root)
        cache_root = Path(tempfile.mkdtemp(prefix="brats-seg-converted-"))
        atexit.register(shutil.rmtree, cache_root, ignore_errors=True)
    if name == "auto":
        return choose_fastest(
            model,
            model_cfg,
            Path(checkpoint),
            cache_root,
            batch_size=batch_size,
            divisor=divisor,
            run_cfg=run_cfg,
        )
    return convert(model, model_cfg, Path(checkpoint), name, cache_root, run_cfg)


def backend_option(run_cfg: Any, given: Any = None) -> str:
    """The backend an evaluate or predict uses: ``given`` unless null, else the run's own
    evaluate.backend (keras for a run older than the option)."""
    from brats_seg.config_schema import run_setting

    return str(run_setting(given, run_cfg.evaluate.get("backend") or KERAS))


def run_backend(model, run_cfg: Any, checkpoint: Path, given: Any = None):
    """A run's model (loaded from ``checkpoint``) in the backend of backend_option."""
    from brats_seg.models.registry import divisor

    return load_backend(
        model,
        run_cfg.model,
        checkpoint,
        backend_option(run_cfg, given),
        batch_size=int(run_cfg.evaluate.batch_size),
        divisor=divisor(run_cfg.model),
        run_cfg=run_cfg,
    )


def backend_name(model) -> str:
    """The runtime a model from load_backend computes in."""
    return model.backend if isinstance(model, ConvertedModel) else "keras"
