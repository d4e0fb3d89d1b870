"""Inference runtimes (issue 27, item 2): every exportable family computes in ONNX Runtime and
OpenVINO what it computes in Keras, conversions are cached beside their checkpoint and rebuilt when
it changes, ``auto`` measures once, and what cannot run is refused in one line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import run_cli

keras = pytest.importorskip("keras")
pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

# The bar: argmax agreement inside the brain and the largest probability difference.
MIN_AGREEMENT = 0.9999
MAX_PROB_DIFF = 1e-4

# Each family at a few channels wide: seconds to build, convert and run.
TINY_OPTIONS = {
    "unet": {"filters": [4, 8, 8, 8], "bridge_filters": 8},
    "unet3pp": {"filters": [4, 8, 8, 8], "cat_channels": 4},
    "resunetpp": {"filters": [8, 8, 8, 8], "bridge_filters": 8, "se_ratio": 4},
    "attention_unet": {"filters": [4, 8, 8, 8], "bridge_filters": 8},
}
# Keras' exporter cannot trace UpSampling2D(bilinear) (UNet 3+) or the attention gates' resize
# with unknown height and width: those two export at a fixed size only.
ANY_SIZE = {"unet": True, "unet3pp": False, "resunetpp": True, "attention_unet": False}
RUNTIMES = ("onnxruntime", "openvino")


def tiny_model(family: str, shape, seed: int = 0):
    from brats_seg.models.registry import build_model, load_model_config

    cfg = {**load_model_config(family), **TINY_OPTIONS[family]}
    keras.utils.set_random_seed(seed)
    return build_model(cfg, shape), cfg


def saved(model, folder):
    path = folder / "checkpoints" / "best.keras"
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def volume(seed: int = 1) -> np.ndarray:
    """Six preprocessed-like slices of 48x64 with a brain in the middle (zeros around it)."""
    x = np.zeros((6, 48, 64, 4), dtype=np.float32)
    x[1:5, 6:41, 9:58] = np.random.default_rng(seed).normal(size=(4, 35, 49, 4))
    return x


def agreement(model, other, x):
    from brats_seg.inference.slices import predict_probabilities

    kw = {"divisor": 16, "tta": True}
    ref = predict_probabilities(model, x, 4, **kw)
    got = predict_probabilities(other, x, 4, **kw)
    brain = np.any(x != 0, axis=-1)
    same = np.mean(np.argmax(ref, -1)[brain] == np.argmax(got, -1)[brain])
    return same, float(np.abs(ref - got).max())


# The U-Net and UNet 3+ in the fast lane; ResUNet++ and the attention U-Net (4 to 8 s each to
# convert) in the slow one.
CASES = [
    pytest.param(
        family,
        runtime,
        any_size,
        marks=[pytest.mark.slow] if family in ("resunetpp", "attention_unet") else [],
    )
    for family in TINY_OPTIONS
    for runtime in RUNTIMES
    for any_size in ((False, True) if ANY_SIZE[family] else (False,))
]


@pytest.mark.parametrize(("family", "runtime", "any_size"), CASES)
def test_each_exportable_family_computes_what_keras_computes(family, runtime, any_size, tmp_path):
    from brats_seg.inference.backends import backend_name, load_backend

    model, cfg = tiny_model(family, (None, None, 4) if any_size else (48, 64, 4))
    converted = load_backend(model, cfg, saved(model, tmp_path), runtime)
    assert backend_name(converted) == runtime
    same, diff = agreement(model, converted, volume())
    assert same >= MIN_AGREEMENT and diff <= MAX_PROB_DIFF, (same, diff)


def test_a_mixed_bfloat16_model_runs_converted_in_float32(tmp_path):
    """ONNX Runtime loads no bfloat16 convolutions: the conversion is of a float32 copy, which
    computes what the same weights compute in float32 Keras."""
    from brats_seg.inference.backends import float32_copy, load_backend

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model, cfg = tiny_model("unet", (48, 64, 4))
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.layers[1].compute_dtype == "bfloat16"
    converted = load_backend(model, cfg, saved(model, tmp_path), "onnxruntime")
    same, diff = agreement(float32_copy(model, cfg), converted, volume())
    assert same >= MIN_AGREEMENT and diff <= MAX_PROB_DIFF, (same, diff)


@pytest.mark.parametrize("family", [f for f, ok in ANY_SIZE.items() if not ok])
def test_a_family_that_cannot_export_for_any_size_is_refused_by_name(family, tmp_path):
    from brats_seg.errors import RunError
    from brats_seg.inference.backends import load_backend

    model, cfg = tiny_model(family, (None, None, 4))
    with pytest.raises(RunError, match=rf"model {family} \(family \w+\) cannot be exported"):
        load_backend(model, cfg, saved(model, tmp_path), "onnxruntime")
    # nothing half-written is left as a cache
    assert not list((tmp_path / "checkpoints" / "converted").glob("*.onnx"))


def test_a_conversion_is_cached_and_rebuilt_when_its_checkpoint_changes(tmp_path):
    from brats_seg.inference.backends import SOURCE_FILE, load_backend

    model, cfg = tiny_model("unet", (48, 64, 4))
    checkpoint = saved(model, tmp_path)
    first = load_backend(model, cfg, checkpoint, "onnxruntime")
    assert first.path.parent.name == "best-fixed.onnx"
    assert first.path.parent.parent == checkpoint.parent / "converted"
    source = json.loads((first.path.parent / SOURCE_FILE).read_text())["source"]
    assert source["size"] == checkpoint.stat().st_size and len(source["sha256"]) == 64
    stamp = first.path.stat().st_mtime_ns
    again = load_backend(model, cfg, checkpoint, "onnxruntime")
    assert again.path.stat().st_mtime_ns == stamp  # reused, not converted again

    # the checkpoint is trained further (other weights): the cached conversion is stale
    retrained, _ = tiny_model("unet", (48, 64, 4), seed=5)
    saved(retrained, tmp_path)
    rebuilt = load_backend(retrained, cfg, checkpoint, "onnxruntime")
    assert rebuilt.path.stat().st_mtime_ns != stamp
    same, diff = agreement(retrained, rebuilt, volume())
    assert same >= MIN_AGREEMENT and diff <= MAX_PROB_DIFF
    stale_same, _ = agreement(retrained, first, volume())
    assert stale_same < MIN_AGREEMENT  # the old conversion would have been wrong


def test_auto_measures_once_per_cpu_and_reuses_the_measurement(tmp_path):
    from brats_seg.inference.backends import backend_name, load_backend

    model, cfg = tiny_model("unet", (48, 64, 4))
    checkpoint = saved(model, tmp_path)
    chosen = load_backend(model, cfg, checkpoint, "auto", batch_size=2, divisor=16)
    record_path = checkpoint.parent / "converted" / "best-fixed.speed.json"
    (key, measured), *others = json.loads(record_path.read_text()).items()
    assert not others
    assert set(measured["seconds_per_batch"]) == {"keras", "onnxruntime", "openvino"}
    fastest = min(measured["seconds_per_batch"], key=measured["seconds_per_batch"].get)
    assert backend_name(chosen) == measured["chosen"] == fastest
    assert json.loads(key)["sha256"] and "CPU" in json.loads(key)["cpu"]
    # the stored measurement decides the next time: make it name the slowest runtime
    slowest = max(measured["seconds_per_batch"], key=measured["seconds_per_batch"].get)
    record_path.write_text(json.dumps({key: {**measured, "chosen": slowest}}))
    assert backend_name(load_backend(model, cfg, checkpoint, "auto", batch_size=2)) == slowest


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_runtime_that_is_not_installed_is_one_line_saying_what_to_install(
    runtime, tmp_path, monkeypatch
):
    import sys

    from brats_seg.errors import ConfigError
    from brats_seg.inference.backends import load_backend

    model, cfg = tiny_model("unet", (48, 64, 4))
    monkeypatch.setitem(sys.modules, runtime, None)  # what an absent package imports as
    with pytest.raises(ConfigError, match=r"pip install 'brats-seg\[runtimes\]'"):
        load_backend(model, cfg, saved(model, tmp_path), runtime)
    assert not (tmp_path / "checkpoints" / "converted").exists()


@pytest.mark.slow
def test_predict_and_export_through_the_runtimes(tiny_trained_run, tmp_path):
    """The CLI: predict backend=onnxruntime writes the classes Keras predicts and records the
    backend, backend=openvino_int8 calibrates on the run's training patients; export
    format=onnx|openvino write a model that its runtime serves, quantize=int8 an int8 one."""
    import onnxruntime
    import openvino

    from brats_seg.runfolder import CHECKPOINT_DIR

    run = tmp_path / "run"
    shutil.copytree(tiny_trained_run, run)
    cases = tmp_path / "cases"
    done = run_cli("synth", f"out={cases}", "cases=1", "shape=[32,32,16]", "seed=3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    outputs = {}
    for backend in ("keras", "onnxruntime", "openvino_int8"):
        out = tmp_path / f"pred-{backend}"
        done = run_cli(
            "predict",
            f"run={run}",
            f"input={cases}",
            f"output={out}",
            f"backend={backend}",
            "montage_slices=0",
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"backend={backend}" in done.stdout
        record = json.loads((out / "inference.json").read_text())
        assert record["backend"] == [backend]
        outputs[backend] = json.loads((out / "metrics.json").read_text())["regions"]
    for region, scores in outputs["keras"].items():
        assert outputs["onnxruntime"][region] == pytest.approx(scores, abs=1e-3), region
    converted = run / CHECKPOINT_DIR / "converted"
    assert (converted / "best-fixed.onnx" / "source.json").is_file()
    train = json.loads((run / "split.json").read_text())["train"]
    int8 = json.loads((converted / "best-fixed.openvino-int8" / "source.json").read_text())
    assert int8["source"]["calibration"]["cases"] == sorted(train)
    # int8 changes the numbers a little, not the segmentation's size
    for region, scores in outputs["openvino_int8"].items():
        assert scores["dice_mean"] == pytest.approx(outputs["keras"][region]["dice_mean"], abs=0.1)

    refused = run_cli("export", f"run={run}", "format=onnx", "quantize=int8", cwd=tmp_path)
    assert refused.returncode != 0 and "needs format=openvino" in refused.stderr
    for fmt, extra in (("onnx", []), ("openvino", []), ("openvino", ["quantize=int8"])):
        out = tmp_path / f"export-{fmt}{len(extra)}"
        done = run_cli("export", f"run={run}", f"format={fmt}", f"out={out}", *extra, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        info = json.loads((out / "export.json").read_text())
        if extra:
            assert info["precision"]["quantized"]["calibration_cases"] == sorted(train)
        assert info["input"]["any_size"] is True
        x = np.random.default_rng(0).normal(size=(2, 48, 64, 4)).astype(np.float32)
        if fmt == "onnx":
            session = onnxruntime.InferenceSession(str(out / "model.onnx"))
            probs = session.run(None, {info["input_name"]: x})[0]
        else:
            probs = openvino.Core().compile_model(str(out / "model.xml"), "CPU")(x)[0]
        assert probs.shape == (2, 48, 64, 4)
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)


@pytest.mark.slow
def test_int8_joins_auto_only_after_its_dice_check_passed(tiny_trained_run, tmp_path):
    """evaluate backend=openvino_int8 scores the test patients in int8 and in Keras side by side and
    stores the per-region drop of mean Dice; auto times int8 only for a checkpoint whose check
    passed (every drop under 0.005)."""
    from brats_seg.inference.backends import INT8_MAX_DICE_DROP
    from brats_seg.runfolder import CHECKPOINT_DIR

    run = tmp_path / "run"
    shutil.copytree(tiny_trained_run, run)
    keras_regions = json.loads((run / "metrics.json").read_text())["regions"]
    out = tmp_path / "eval-int8"
    done = run_cli("evaluate", f"run={run}", "backend=openvino_int8", f"out={out}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    check = metrics["int8_check"]
    assert metrics["inference"]["backend"] == "openvino_int8"
    # the Keras side is the run's own evaluation again (same patients, same settings)
    for region, scores in keras_regions.items():
        assert check["keras_dice"][region] == pytest.approx(scores["dice_mean"], abs=1e-6)
        assert check["int8_dice"][region] == metrics["regions"][region]["dice_mean"]
        drop = check["keras_dice"][region] - check["int8_dice"][region]
        assert check["drop"][region] == pytest.approx(drop, abs=1e-6)
    assert check["passed"] == all(d < INT8_MAX_DICE_DROP for d in check["drop"].values())
    converted = run / CHECKPOINT_DIR / "converted"
    stored = converted / "best-fixed.int8-check.json"
    assert json.loads(stored.read_text()) == check

    cases = tmp_path / "cases"
    done = run_cli("synth", f"out={cases}", "cases=1", "shape=[32,32,16]", "seed=3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]

    def timed_by_auto(passed: bool) -> set[str]:
        stored.write_text(json.dumps({**check, "passed": passed}))
        (converted / "best-fixed.speed.json").unlink(missing_ok=True)
        pred = tmp_path / f"pred-{passed}"
        done = run_cli(
            "predict",
            f"run={run}",
            f"input={cases}",
            f"output={pred}",
            "backend=auto",
            "montage_slices=0",
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        (measured,) = json.loads((converted / "best-fixed.speed.json").read_text()).values()
        return set(measured["seconds_per_batch"])

    assert "openvino_int8" not in timed_by_auto(passed=False)
    assert "openvino_int8" in timed_by_auto(passed=True)


def test_an_unknown_backend_is_refused_before_any_work(tmp_path):
    done = run_cli("predict", "run=nowhere", "input=nowhere", "backend=tensorrt", cwd=tmp_path)
    assert done.returncode != 0
    # one line naming the option, its value and the choices (without the option: "not in struct")
    assert "backend=tensorrt" in done.stderr and "onnxruntime, openvino" in done.stderr
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_runtimes_agree_with_keras_inside_the_brain_on_a_real_case(real_data_root, tmp_path):
    """The recipe's base U-Net with random weights, a real case's brain box (the slices through
    the middle of the brain): each runtime's classes and probabilities against Keras'."""
    from brats_seg.config import compose
    from brats_seg.data.discovery import find_cases
    from brats_seg.data.nifti import load_case
    from brats_seg.data.preprocess import preprocess_case
    from brats_seg.data.settings import PreprocessSettings
    from brats_seg.inference.backends import load_backend
    from brats_seg.inference.slices import brain_box, predict_probabilities
    from brats_seg.models.registry import build_model, divisor

    case = sorted(find_cases(real_data_root), key=lambda c: c.case_id)[0]
    x = preprocess_case(load_case(case), PreprocessSettings.default()).x
    slices, _ = brain_box(x)
    middle = slices[len(slices) // 2 - 8 : len(slices) // 2 + 8]
    x = x[middle]
    cfg = compose("train", ["recipe=real_cpu"])
    keras.utils.set_random_seed(0)
    model = build_model(cfg.model, (None, None, x.shape[-1]))
    checkpoint = saved(model, tmp_path)
    div = divisor(cfg.model)
    brain = np.any(x != 0, axis=-1)
    ref = predict_probabilities(model, x, 8, divisor=div, tta=True)
    assert np.unique(np.argmax(ref, -1)[brain]).size > 1  # not one class everywhere
    for runtime in RUNTIMES:
        converted = load_backend(model, cfg.model, checkpoint, runtime)
        got = predict_probabilities(converted, x, 8, divisor=div, tta=True)
        same = np.mean(np.argmax(ref, -1)[brain] == np.argmax(got, -1)[brain])
        assert same >= MIN_AGREEMENT, (runtime, same)
        assert np.abs(ref - got).max() <= MAX_PROB_DIFF, runtime


@pytest.mark.slow
def test_the_runtimes_benchmark_runs_in_tiny_mode(tmp_path):
    import subprocess
    import sys

    from conftest import REPO_ROOT

    figures = tmp_path / "figures.json"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "bench_runtimes.py"),
            "--tiny",
            "--backends",
            "keras,onnxruntime",
            "--json",
            str(figures),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = json.loads(figures.read_text())["rows"]
    assert [(r["backend"], r["call"]) for r in rows] == [
        ("keras", "first"),
        ("keras", "cached"),
        ("onnxruntime", "first"),
        ("onnxruntime", "cached"),
    ]
    assert all(r["used"] == [r["backend"]] and r["wall_seconds_per_case"] > 0 for r in rows)
    assert "floor" in done.stdout


def test_null_means_the_runs_own_backend_and_keras_for_older_runs():
    from omegaconf import OmegaConf

    from brats_seg.inference.backends import backend_option

    older = OmegaConf.create({"evaluate": {"tta": True}})  # a run trained before the option
    newer = OmegaConf.create({"evaluate": {"tta": True, "backend": "openvino"}})
    assert backend_option(older) == "keras"
    assert backend_option(newer) == "openvino"
    assert backend_option(newer, "onnxruntime") == "onnxruntime"
