"""Calibrated probabilities end to end: a tiny trained model made over-confident gets a temperature
above 1 and a lower ECE from `evaluate calibration=true`, and `predict calibrated=true
save_probabilities=true` writes the probabilities that temperature gives."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import blob_case, run_cli, write_case

# The head's logits are multiplied by this: its softmax becomes p**SHARPEN renormalised.
SHARPEN = 8.0


def _sharpen(run: Path) -> None:
    """Scale the softmax head's 1x1 convolution (kernel and bias) of the run's best.keras."""
    from brats_seg.runfolder import load_checkpoint

    path = run / "checkpoints" / "best.keras"
    model = load_checkpoint(path)
    head = model.get_layer("head")
    head.set_weights([w * SHARPEN for w in head.get_weights()])
    model.save(path)


@pytest.fixture(scope="module")
def calibrated_run(tiny_trained_run, tmp_path_factory) -> Path:
    """A copy of the tiny run, sharpened, then calibrated by `brats-seg evaluate`."""
    run = tmp_path_factory.mktemp("calibrated") / "run"
    shutil.copytree(tiny_trained_run, run)
    _sharpen(run)
    result = run_cli("evaluate", f"run={run}", "calibration=true", cwd=run.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def new_case(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("new-case")
    image, classes = blob_case((32, 32, 16), seed=11)
    write_case(root / "Brats18_N_1", "Brats18_N_1", image, classes)
    return root


@pytest.mark.slow  # evaluates once (module fixture) on top of the shared tiny run
def test_an_over_confident_model_gets_a_temperature_above_one_and_a_lower_ece(calibrated_run):
    metrics = json.loads((calibrated_run / "metrics.json").read_text())
    calibration = metrics["calibration"]
    stored = json.loads((calibrated_run / "calibration.json").read_text())
    assert stored["temperature"] == calibration["temperature"] > 1.0
    assert calibration["ece_after"] < calibration["ece_before"]
    # fitted on the validation patients, reported on the test ones
    split = json.loads((calibrated_run / "split.json").read_text())
    assert stored["validation_cases"] == split["val"] and split["val"]
    assert calibration["after"]["voxels"] == calibration["before"]["voxels"] > 0
    assert (calibrated_run / "plots" / "reliability.png").stat().st_size > 0
    assert "Calibration: temperature" in (calibrated_run / "metrics.md").read_text()


@pytest.mark.slow  # two predictions
def test_predict_reproduces_the_stored_temperature(calibrated_run, new_case, tmp_path):
    from brats_seg.inference.scoring import prediction_files

    temperature = json.loads((calibrated_run / "calibration.json").read_text())["temperature"]
    outs = {}
    for name, extra in (("raw", []), ("calibrated", ["calibrated=true"])):
        outs[name] = tmp_path / name
        result = run_cli(
            "predict",
            f"run={calibrated_run}",
            f"input={new_case}",
            f"output={outs[name]}",
            "save_probabilities=true",
            "montage_slices=0",
            *extra,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    source = nib.load(new_case / "Brats18_N_1" / "Brats18_N_1_flair.nii.gz")
    probs = {}
    for name, out in outs.items():
        image = nib.load(out / "Brats18_N_1_probabilities.nii.gz")
        assert image.shape == (32, 32, 16, 4) and image.get_data_dtype() == np.float32
        np.testing.assert_allclose(image.affine, source.affine)
        probs[name] = np.asarray(image.dataobj, dtype=np.float64)
        np.testing.assert_allclose(probs[name].sum(axis=-1), 1.0, atol=1e-5)
        # the probabilities sit beside the segmentation, which scoring alone takes as a prediction
        assert list(prediction_files(out)) == ["Brats18_N_1"]
    # The tempered softmax computed directly from the untempered one: p**(1/T), renormalised.
    direct = probs["raw"] ** (1 / temperature)
    direct /= direct.sum(axis=-1, keepdims=True)
    assert np.abs(probs["calibrated"] - probs["raw"]).max() > 0.01  # the temperature did something
    np.testing.assert_allclose(probs["calibrated"], direct, atol=1e-4)
    record = json.loads((outs["calibrated"] / "inference.json").read_text())
    assert record["temperatures"] == [temperature]
    assert record["probabilities"] == {"Brats18_N_1": "Brats18_N_1_probabilities.nii.gz"}
    seg = [np.asarray(nib.load(o / "Brats18_N_1_seg.nii.gz").dataobj) for o in outs.values()]
    assert np.array_equal(*seg)  # one run: tempering keeps every voxel's class


def _one_line_refusal(result, *words: str) -> None:
    assert result.returncode == 1, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert all(word in lines[0] for word in words), lines[0]


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_predict_calibrated_refuses_a_run_without_a_temperature(
    tiny_trained_run, new_case, tmp_path
):
    out = tmp_path / "pred"
    result = run_cli(
        "predict",
        f"run={tiny_trained_run}",
        f"input={new_case}",
        f"output={out}",
        "calibrated=true",
        cwd=tmp_path,
    )
    _one_line_refusal(result, "calibration.json", "calibration=true")
    assert not out.exists()


@pytest.mark.slow  # on top of the calibrated run
def test_predict_calibrated_refuses_a_temperature_of_another_checkpoint(
    calibrated_run, new_case, tmp_path
):
    run = tmp_path / "run"
    shutil.copytree(calibrated_run, run)
    _sharpen(run)  # the model changed after its temperature was fitted
    out = tmp_path / "pred"
    result = run_cli(
        "predict", f"run={run}", f"input={new_case}", f"output={out}", "calibrated=true"
    )
    _one_line_refusal(result, "calibration.json", "another model file")
    assert not out.exists()


@pytest.mark.slow  # on top of the calibrated run
def test_predict_calibrated_refuses_a_temperature_fitted_with_the_other_tta(
    calibrated_run, new_case, tmp_path
):
    """The tiny run evaluates without the mirror: its temperature fits single-pass softmax, not the
    flatter mean of two passes."""
    assert json.loads((calibrated_run / "calibration.json").read_text())["tta"] is False
    out = tmp_path / "pred"
    result = run_cli(
        "predict",
        f"run={calibrated_run}",
        f"input={new_case}",
        f"output={out}",
        "calibrated=true",
        "tta=true",
        cwd=tmp_path,
    )
    _one_line_refusal(result, "calibration.json", "fitted with tta=false", "uses tta=true")
    assert not out.exists()


def test_calibration_without_validation_patients_is_refused_before_any_folder(tmp_path):
    result = run_cli(
        "train", "debug=tiny", "evaluate.calibration=true", "data.split.val=0", cwd=tmp_path
    )
    _one_line_refusal(
        result, "brats-seg train: error: evaluate.calibration=true: must be false", "split.val=0"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # two predictions
def test_an_ensemble_tempers_each_member_with_its_own_temperature(
    calibrated_run, new_case, tmp_path
):
    """Two runs with different temperatures: the ensemble's probabilities are the mean of each
    member's probabilities tempered by its own temperature."""
    other = tmp_path / "other"
    shutil.copytree(calibrated_run, other)
    record = json.loads((other / "calibration.json").read_text())
    record["temperature"] = 1.0  # this member is used untempered
    (other / "calibration.json").write_text(json.dumps(record))
    outs = {}
    for name, runs in (
        ("single", str(calibrated_run)),
        ("ensemble", f"[{calibrated_run},{other}]"),
    ):
        outs[name] = tmp_path / name
        result = run_cli(
            "predict",
            f"run={runs}",
            f"input={new_case}",
            f"output={outs[name]}",
            "save_probabilities=true",
            "calibrated=true",
            "montage_slices=0",
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    probs = {
        name: np.asarray(nib.load(out / "Brats18_N_1_probabilities.nii.gz").dataobj)
        for name, out in outs.items()
    }
    temperature = json.loads((calibrated_run / "calibration.json").read_text())["temperature"]
    raw = probs["single"].astype(np.float64) ** temperature  # undo the tempering: the raw softmax
    raw /= raw.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(probs["ensemble"], (probs["single"] + raw) / 2, atol=2e-4)
