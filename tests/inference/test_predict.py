"""Training on the real BraTS cases, then predict and scoring.

Predict reads NIfTI and writes NIfTI; scoring takes predictions from any tool.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import SMALL_UNET, run_cli

ET_LABEL = {"brats2021": 4, "brats2023": 3}


# The study's "croped" and "5channel" preprocessing, so that predict must read both from the run
# folder: with today's defaults (240x240x4) the model would refuse the slices, and the crop must be
# put back in place.
RUN_PREPROCESSING = [
    "data.preprocess.fifth_channel=flair_edges",
    "data.preprocess.crop.enabled=true",
    "data.preprocess.crop.size=[160,192]",
]


@pytest.fixture(scope="module")
def real_run(real_data_root, tmp_path_factory):
    """A narrow U-Net trained briefly on the real patients.

    The duplicate pair counts as one.
    """
    out = tmp_path_factory.mktemp("real") / "outputs"
    out.mkdir()
    result = run_cli(
        "train",
        "data=brats",
        f"data.root={real_data_root}",
        "data.selection.threshold=1000",
        *RUN_PREPROCESSING,
        f"paths.output_root={out}",
        *SMALL_UNET,
        "loss=weighted",
        "optimizer.lr=1e-3",
        "trainer=tiny",
        "trainer.epochs=3",
        "trainer.steps_per_epoch=6",
        "trainer.batch_size=4",
        # this barely trained model scatters its predictions over the brain: lesion-wise scoring of
        # thousands of false lesions would be most of the module's time (tests/metrics covers it)
        "evaluate.lesionwise=false",
        "hydra.run.dir=" + str(out / "real-run"),
        cwd=out.parent,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "real-run"


@pytest.mark.slow
def test_training_on_real_cases_writes_every_artifact(real_run, duplicate_pair):
    status = json.loads((real_run / "run.json").read_text())
    assert status["status"] == "completed"
    for name in (
        "config.yaml",
        "split.json",
        "history.csv",
        "metrics.json",
        "metrics.md",
        "checkpoints/best.keras",
        "plots/learning_curves.png",
        "plots/confusion_matrix.png",
        "plots/overlay_1.png",
    ):
        assert (real_run / name).exists(), name
    split = json.loads((real_run / "split.json").read_text())
    together = [s for s, cases in split.items() if set(duplicate_pair) & set(cases)]
    assert len(together) == 1  # the duplicate pair stays in one split
    metrics = json.loads((real_run / "metrics.json").read_text())
    # every pixel of the test volumes' selected slices pooled, on the 160x192 crop the model saw
    assert metrics["test_pixels"] % (192 * 160) == 0 and metrics["test_pixels"] > 0


@pytest.fixture(scope="module")
def predictions(real_run, real_data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("pred")
    result = run_cli(
        "predict",
        f"run={real_run}",
        f"input={real_data_root}",
        f"output={out}",
        "lesionwise=false",
        cwd=out,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def _source(real_data_root: Path, case: str) -> nib.Nifti1Image:
    folder = real_data_root / case
    name = next(
        p for p in sorted(folder.iterdir()) if p.name.endswith(("_flair.nii.gz", "-t2f.nii.gz"))
    )
    return nib.load(str(name))


@pytest.mark.slow
def test_each_output_overlays_its_input_in_its_own_label_convention(predictions, real_data_root):
    out, _ = predictions
    expected = {
        "Brats18_2013_2_1": ("Brats18_2013_2_1_seg.nii.gz", "brats2021"),
        "BraTS2021_00000": ("BraTS2021_00000_seg.nii.gz", "brats2021"),
        "BraTS2021_00014": ("BraTS2021_00014_seg.nii.gz", "brats2021"),
        "BraTS2021_00019": ("BraTS2021_00019_seg.nii.gz", "brats2021"),
        "BraTS-GLI-00000-000": ("BraTS-GLI-00000-000-seg.nii.gz", "brats2023"),
    }
    et_seen = False
    for case, (file_name, convention) in expected.items():
        written = nib.load(str(out / file_name))
        source = _source(real_data_root, case)
        data = np.asarray(written.dataobj)
        # the 160x192 crop is back on the 240x240 grid
        assert data.dtype == np.uint8 and data.shape == source.shape
        assert np.allclose(written.affine, source.affine)
        assert written.header.get_zooms() == source.header.get_zooms()
        allowed = {0, 1, 2, ET_LABEL[convention]}
        assert set(np.unique(data).tolist()) <= allowed, (case, np.unique(data))
        et_seen |= bool((data == ET_LABEL[convention]).any())
        # round trip through nibabel
        nib.save(written, str(out / f"{case}_copy.nii.gz"))
        assert np.array_equal(np.asarray(nib.load(str(out / f"{case}_copy.nii.gz")).dataobj), data)
        assert (out / f"{case}_overlay.png").exists()
    assert et_seen, "the model predicted no ET anywhere, so the ET label mapping was not exercised"
    # the same images under two naming conventions: same prediction, ET written as 4 and as 3
    seg2021 = np.asarray(nib.load(str(out / "BraTS2021_00000_seg.nii.gz")).dataobj)
    seg2023 = np.asarray(nib.load(str(out / "BraTS-GLI-00000-000-seg.nii.gz")).dataobj)
    assert np.array_equal(np.where(seg2021 == 4, 3, seg2021), seg2023)


@pytest.mark.slow
def test_predict_scores_cases_that_have_a_seg(predictions, real_cases):
    out, result = predictions
    metrics = json.loads((out / "metrics.json").read_text())
    assert sorted(p["case"] for p in metrics["per_patient"]) == sorted(real_cases)
    for patient in metrics["per_patient"]:
        for region in ("WT", "TC", "ET"):
            assert 0.0 <= patient[region]["dice"] <= 1.0 and patient[region]["hd95"] >= 0.0
    assert "WT Dice" in result.stdout or "WT: Dice" in result.stdout


@pytest.mark.slow
def test_a_model_of_fixed_size_predicts_whole_slices_or_on_request_the_brain_box(
    predictions, real_run, real_data_root, tmp_path
):
    """The run's model was trained on 160x192 crops (fixed size): predict gives it whole crops by
    default; brain_box=true rebuilds it fully convolutional for the brain's box of the uncropped
    volume."""
    out, _ = predictions
    assert json.loads((out / "inference.json").read_text())["brain_box"] is False
    case = "BraTS2021_00019"
    result = run_cli(
        "predict",
        f"run={real_run}",
        f"input={real_data_root / case}",
        f"output={tmp_path}",
        "brain_box=true",
        "montage_slices=0",
        "lesionwise=false",
        cwd=tmp_path,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "inference.json").read_text())["brain_box"] is True
    name = f"{case}_seg.nii.gz"
    whole = np.asarray(nib.load(str(out / name)).dataobj)
    box = np.asarray(nib.load(str(tmp_path / name)).dataobj)
    assert box.shape == whole.shape
    # Background outside the brain's box (grown to the model's divisor of 16) and off-brain slices.
    brain = np.asarray(_source(real_data_root, case).dataobj) != 0
    rows, cols, slices = (np.flatnonzero(brain.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1)))
    inside = np.zeros(box.shape, bool)
    inside[
        max(rows[0] - 16, 0) : rows[-1] + 17,
        max(cols[0] - 16, 0) : cols[-1] + 17,
        slices[0] : slices[-1] + 1,
    ] = True
    assert not box[~inside].any()


@pytest.mark.slow
def test_evaluate_scores_a_folder_of_predictions_with_the_same_code(
    predictions, real_data_root, tmp_path
):
    out, _ = predictions
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    for path in out.glob("*seg.nii.gz"):
        shutil.copy(path, pred_dir / path.name)
    result = run_cli(
        "evaluate",
        f"pred={pred_dir}",
        f"ref={real_data_root}",
        f"out={tmp_path / 'scores'}",
        "lesionwise=false",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    scored = json.loads((tmp_path / "scores" / "metrics.json").read_text())
    from_predict = json.loads((out / "metrics.json").read_text())
    by_case = {p["case"]: p for p in from_predict["per_patient"]}
    assert {p["case"] for p in scored["per_patient"]} == set(by_case)
    for patient in scored["per_patient"]:
        for region in ("WT", "TC", "ET"):
            assert patient[region]["dice"] == pytest.approx(
                by_case[patient["case"]][region]["dice"]
            )
            assert patient[region]["hd95"] == pytest.approx(
                by_case[patient["case"]][region]["hd95"]
            )
    assert set(scored["regions"]) == {"WT", "TC", "ET"}


@pytest.mark.slow  # scores real 240x240x155 volumes
def test_perfect_predictions_score_dice_one(real_data_root, real_cases, tmp_path):
    """The reference segs themselves, in their own conventions, scored against the references."""
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    for case in ("BraTS2021_00014", "BraTS-GLI-00000-000"):
        for seg in (real_data_root / case).glob("*seg.nii.gz"):
            shutil.copy(seg, pred_dir / seg.name)
    result = run_cli(
        "evaluate", f"pred={pred_dir}", f"ref={real_data_root}", f"out={tmp_path}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    scored = json.loads((tmp_path / "metrics.json").read_text())
    # every other reference case scores 0 and is listed
    perfect = {"BraTS2021_00014", "BraTS-GLI-00000-000"}
    assert sorted(p["case"] for p in scored["per_patient"]) == sorted(real_cases)
    assert scored["missing"] == sorted(set(real_cases) - perfect)
    for patient in scored["per_patient"]:
        if patient.get("missing"):
            continue
        for region in ("WT", "TC", "ET"):
            assert patient[region]["dice"] == 1.0 and patient[region]["hd95"] == 0.0


@pytest.mark.slow
def test_model_input_is_the_runs_preprocessing(real_run):
    import keras

    import brats_seg.losses  # noqa: F401  (registers the loss classes the checkpoint names)

    model = keras.models.load_model(real_run / "checkpoints" / "best.keras")
    assert tuple(model.input_shape[1:]) == (160, 192, 5)


@pytest.mark.slow
def test_predict_refuses_slices_of_another_size(real_data_root, tmp_path):
    """A model trained on small synthetic slices, without a crop.

    It is asked to segment 240x240 BraTS cases.
    """

    run_dir = tmp_path / "tiny-run"
    result = run_cli(
        "train",
        "debug=tiny",
        *SMALL_UNET,
        "trainer.epochs=1",
        f"paths.output_root={tmp_path}",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    result = run_cli(
        "predict",
        f"run={run_dir}",
        f"input={real_data_root}",
        f"output={tmp_path / 'o'}",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert (
        "are 240x240x4 (HxWxchannels)" in result.stderr
        and "was trained on 32x32x4" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "o").glob("*.nii.gz"))


@pytest.mark.slow
def test_predict_never_overwrites_an_input_file(real_run, real_data_root, tmp_path):
    case = tmp_path / "BraTS2021_00019"
    shutil.copytree(real_data_root / "BraTS2021_00019", case)
    for path in case.iterdir():
        path.chmod(0o644)
    reference = (case / "BraTS2021_00019_seg.nii.gz").read_bytes()
    result = run_cli("predict", f"run={real_run}", f"input={case}", f"output={case}", cwd=tmp_path)
    assert result.returncode == 1
    assert "would overwrite the input file" in result.stderr and "Traceback" not in result.stderr
    assert (case / "BraTS2021_00019_seg.nii.gz").read_bytes() == reference


@pytest.mark.slow
def test_predict_names_the_missing_modality(real_run, real_data_root, tmp_path):
    case = tmp_path / "BraTS2021_00019"
    case.mkdir()
    for path in (real_data_root / "BraTS2021_00019").iterdir():
        if not path.name.endswith("_t2.nii.gz"):
            shutil.copy(path, case / path.name)
    result = run_cli(
        "predict", f"run={real_run}", f"input={case}", f"output={tmp_path / 'o'}", cwd=tmp_path
    )
    assert result.returncode == 1
    assert "BraTS2021_00019_t2.nii" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_predict_refuses_a_run_folder_whose_training_saved_no_model(
    real_run, real_data_root, tmp_path
):
    # a completed run (its run.json and config.yaml) whose checkpoints are gone
    shutil.copy(real_run / "config.yaml", tmp_path / "config.yaml")
    shutil.copy(real_run / "run.json", tmp_path / "run.json")
    result = run_cli(
        "predict",
        f"run={tmp_path}",
        f"input={real_data_root}",
        f"output={tmp_path / 'o'}",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "no model checkpoint" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_predict_refuses_a_run_folder_without_a_model(tmp_path, real_data_root):
    result = run_cli(
        "predict",
        f"run={tmp_path}",
        f"input={real_data_root}",
        f"output={tmp_path / 'o'}",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "not a brats-seg run folder" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow  # scores real 240x240x155 volumes
def test_evaluate_refuses_a_prediction_on_another_grid(real_data_root, tmp_path):
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    reference = nib.load(str(real_data_root / "BraTS2021_00014" / "BraTS2021_00014_seg.nii.gz"))
    shifted = reference.affine.copy()
    shifted[:3, 3] += 5.0  # the same voxels, placed 5 mm away
    nib.save(
        nib.Nifti1Image(np.asarray(reference.dataobj), shifted),
        str(pred_dir / "BraTS2021_00014_seg.nii.gz"),
    )
    result = run_cli(
        "evaluate",
        f"pred={pred_dir}",
        f"ref={real_data_root}",
        f"out={tmp_path / 'scores'}",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert (
        "BraTS2021_00014_seg.nii.gz: affine differs" in result.stderr
        and "Traceback" not in result.stderr
    )
    assert not (tmp_path / "scores" / "metrics.json").exists()


@pytest.mark.slow
def test_predict_submission_naming_writes_what_evaluate_scores(
    real_run, real_data_root, real_cases, tmp_path
):
    out = tmp_path / "submission"
    case = real_data_root / "BraTS-GLI-00000-000"
    result = run_cli(
        "predict",
        f"run={real_run}",
        f"input={case}",
        f"output={out}",
        "naming=submission",
        "montage_slices=0",
        "lesionwise=false",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["BraTS-GLI-00000-000.nii.gz"]
    written = nib.load(str(out / "BraTS-GLI-00000-000.nii.gz"))
    assert written.shape == (240, 240, 155)
    assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1, 2, 3}
    scored = run_cli(
        "evaluate",
        f"pred={out}",
        f"ref={real_data_root}",
        f"out={tmp_path / 'scores'}",
        "lesionwise=false",
        cwd=tmp_path,
    )
    assert scored.returncode == 0, scored.stderr[-2000:]
    metrics = json.loads((tmp_path / "scores" / "metrics.json").read_text())
    assert metrics["missing"] == sorted(set(real_cases) - {"BraTS-GLI-00000-000"})
    bad = run_cli(
        "predict",
        f"run={real_run}",
        f"input={real_data_root}",
        f"output={out}",
        "naming=bids",
        cwd=tmp_path,
    )
    # refused by the config schema while composing
    assert bad.returncode == 1 and "naming=bids" in bad.stderr
    assert "expected one of [brats, submission]" in bad.stderr


@pytest.mark.slow
def test_evaluate_uses_the_last_checkpoint_only_when_told_and_says_so(real_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(real_run, run_dir)
    (run_dir / "checkpoints" / "best.keras").unlink()
    refused = run_cli("evaluate", f"run={run_dir}", cwd=tmp_path)
    assert refused.returncode == 1
    assert "no best.keras" in refused.stderr and "use_last_checkpoint=true" in refused.stderr
    result = run_cli("evaluate", f"run={run_dir}", "use_last_checkpoint=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "used last.keras" in result.stdout
    status = json.loads((run_dir / "run.json").read_text())
    assert status["evaluated_checkpoint"] == "last.keras"
    assert "used last.keras" in status["checkpoint_note"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "used last.keras" in metrics["checkpoint_note"]
    assert metrics["run_check"]["checkpoint"] == "last.keras"
