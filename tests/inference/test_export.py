"""brats-seg export: a SavedModel that plain TensorFlow (no brats-seg, no Keras model code)
loads, whose predictions equal the run's best.keras, at the training size and at another valid
size."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import TINY_RUN, run_cli, run_python

# Runs in a fresh interpreter that imports TensorFlow only, as docs/export.md shows.
_SERVE = """
import sys
import numpy as np
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
serve = model.signatures["serving_default"]
for path in sys.argv[2:]:
    x = np.load(path)
    out = serve(image=tf.constant(x))["output_0"].numpy()
    np.save(path.replace(".npy", "_out.npy"), out)
assert "brats_seg" not in sys.modules
"""


@pytest.fixture(scope="module")
def exported(tiny_trained_run, tmp_path_factory):
    # the session's run is float32: a mixed_bfloat16 model (trainer.precision=auto on a bf16 CPU)
    # computes in bf16 in the export too, where eager and graph execution differ by ~1e-3; float32
    # makes the round trip exact to 1e-5
    run = tiny_trained_run
    assert "trainer.precision=float32" in TINY_RUN
    out = tmp_path_factory.mktemp("export")
    done = run_cli(
        "export",
        f"run={run}",
        "format=savedmodel",
        f"out={out / 'exported'}",
        cwd=out,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "any height and width" in done.stdout
    return run, out / "exported"


@pytest.mark.slow
def test_export_round_trip_equals_best_keras(exported, tmp_path):
    from brats_seg.models.registry import build_model
    from brats_seg.runfolder import RunFolder

    run, target = exported
    info = json.loads((target / "export.json").read_text())
    assert info["input"]["any_size"] and info["input"]["size_multiple_of"] == 16
    assert info["precision"]["policy"] == "float32" and len(info["outputs"]) == 1
    folder = RunFolder(run)
    model = folder.load_best_model()
    rng = np.random.default_rng(0)
    trained = rng.normal(size=(3, *model.input_shape[1:])).astype(np.float32)
    other = rng.normal(size=(2, 48, 64, model.input_shape[-1])).astype(np.float32)
    np.save(tmp_path / "trained.npy", trained)
    np.save(tmp_path / "other.npy", other)
    served = run_python(
        "-c", _SERVE, target / "savedmodel", tmp_path / "trained.npy", tmp_path / "other.npy"
    )
    assert served.returncode == 0, served.stderr[-3000:]
    expected = model.predict(trained, verbose=0)
    got = np.load(tmp_path / "trained_out.npy")
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.array_equal(got.argmax(-1), expected.argmax(-1))
    # another size: the same architecture built for 48x64, with best.keras's weights
    resized = build_model(folder.read_config().model, (48, 64, int(model.input_shape[-1])))
    resized.set_weights(model.get_weights())
    np.testing.assert_allclose(
        np.load(tmp_path / "other_out.npy"), resized.predict(other, verbose=0), atol=1e-5
    )


@pytest.mark.slow
def test_export_refuses_an_unknown_format(exported, tmp_path):
    run, _ = exported
    result = run_cli("export", f"run={run}", "format=tflite", f"out={tmp_path / 'x'}", cwd=tmp_path)
    assert result.returncode != 0 and "tflite" in result.stderr and "savedmodel" in result.stderr
    assert not (tmp_path / "x").exists()


def test_export_json_records_the_precision_policy_and_every_output():
    """export.json says which dtype policy the served model computes in and lists every output the
    SavedModel serves: a deep-supervised UNet 3+ serves its side outputs after the prediction."""
    import keras

    from brats_seg.config import compose
    from brats_seg.inference.export import outputs_info, precision_info
    from brats_seg.models.registry import build_model

    cfg = compose(
        "train",
        [
            "model=unet3plus_full",
            "model.deep_supervision=true",
            "model.filters=[4,8,16,32,64]",
        ],
    )
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = build_model(cfg.model, (32, 32, 4))
    finally:
        keras.config.set_dtype_policy(previous)
    outputs = outputs_info(model, None, None)
    n = len(model.outputs)
    assert n > 1 and len(outputs) == n
    assert [o["name"] for o in outputs] == [f"output_{i}" for i in range(n)]
    assert outputs[0]["meaning"] == "softmax probabilities per class"
    assert all("deep-supervision" in o["meaning"] for o in outputs[1:])
    precision = precision_info(model)
    assert precision["policy"] == "mixed_bfloat16" and precision["compute_dtype"] == "bfloat16"
    assert precision["variable_dtype"] == "float32"
    assert precision["output_dtypes"] == ["float32"] * n
