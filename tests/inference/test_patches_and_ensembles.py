"""Patch training with a fully convolutional model, ensembles of runs, TTA and post-processing in
predict and evaluate, a run without test patients, and a k-fold sweep with its summary (real CLI,
real Keras, tiny sizes)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brats_seg.inference.postprocess import PostprocessSettings

from conftest import SMALL_UNET, record_config_edit, run_cli

PATCH_RUN = [
    "debug=tiny",
    "data.synth.shape=[96,96,16]",
    "data.patch.size=[64,64]",
    "data.sampling.foreground=0.5",
    "data.augment.enabled=true",
    "data.augment.gamma=0.3",
    "data.augment.blur=1.0",
    "data.augment.noise=0.1",
    "trainer.epochs=1",
    *SMALL_UNET,
]


def synthetic_root(out: Path) -> Path:
    roots = [p for p in (out / "cache" / "synthetic").iterdir() if p.is_dir()]
    assert len(roots) == 1, roots
    return roots[0]


def segmentations(folder: Path) -> dict[str, np.ndarray]:
    return {
        p.name: np.asarray(nib.load(str(p)).dataobj) for p in sorted(folder.glob("*_seg.nii.gz"))
    }


@pytest.fixture(scope="module")
def patch_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("patch") / "outputs"
    out.mkdir()
    run_dir = out / "patch-run"
    result = run_cli(
        "train", *PATCH_RUN, f"paths.output_root={out}", f"hydra.run.dir={run_dir}", cwd=out.parent
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, run_dir


@pytest.mark.slow  # trains its own patch run
def test_a_model_trained_on_64x64_patches_predicts_96x96_slices(patch_run):
    import keras

    import brats_seg.losses  # noqa: F401  (registers the loss classes the checkpoint names)

    out, run_dir = patch_run
    model = keras.models.load_model(run_dir / "checkpoints" / "best.keras")
    assert tuple(model.input_shape[1:]) == (None, None, 4)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (
        metrics["test_pixels"] > 0 and metrics["test_pixels"] % (96 * 96) == 0
    )  # evaluated on whole slices
    status = json.loads((run_dir / "run.json").read_text())
    assert status["train_seconds"] > 0 and status["train_cpu_seconds"] > 0
    predicted = out.parent / "predicted"
    result = run_cli(
        "predict",
        f"run={run_dir}",
        f"input={synthetic_root(out)}",
        f"output={predicted}",
        cwd=out.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    segs = segmentations(predicted)
    assert len(segs) == 6 and all(s.shape == (96, 96, 16) for s in segs.values())
    record = json.loads((predicted / "inference.json").read_text())
    cost = record.pop("cost")  # timings vary; their shape is tested in tests/results/test_cost.py
    assert cost["cases"] == 6 and cost["seconds_per_case"] > 0
    assert record == {
        "runs": [str(run_dir.resolve())],
        "tta": False,
        "postprocess": PostprocessSettings().as_dict(),  # all off
        "postprocess_tuned": None,
        "backend": ["keras"],
        "brain_box": False,
        "run_checks": [
            {
                "run": str(run_dir.resolve()),
                "status": "completed",
                "checkpoint": "best.keras",
                "allow_incomplete": False,
                "notes": [],
            }
        ],
        "predictions": {name.removesuffix("_seg.nii.gz"): name for name in segs},
    }


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_an_ensemble_of_two_copies_of_one_run_equals_that_run(tiny_trained_run, tmp_path):
    from brats_seg.inference.ensemble import resolve_runs

    run_dir = tiny_trained_run
    out = run_dir.parent
    sweep = tmp_path / "sweep"
    for name in ("a", "b"):
        shutil.copytree(run_dir, sweep / name)
    assert resolve_runs(str(sweep)) == [
        sweep / "a",
        sweep / "b",
    ]  # a sweep folder: its completed runs
    case = sorted(p for p in synthetic_root(out).iterdir() if p.is_dir())[0]
    options = ["tta=true", "postprocess.min_component=20"]
    single, folder = tmp_path / "single", tmp_path / "folder"
    for run, target in ((run_dir, single), (sweep, folder)):
        result = run_cli(
            "predict", f"run={run}", f"input={case}", f"output={target}", *options, cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr[-3000:]
    one = segmentations(single)
    assert len(one) == 1 and segmentations(folder).keys() == one.keys()
    for name, seg in one.items():
        np.testing.assert_array_equal(segmentations(folder)[name], seg)
    record = json.loads((folder / "inference.json").read_text())
    assert record["runs"] == [str((sweep / "a").resolve()), str((sweep / "b").resolve())]
    assert record["tta"] is True and record["postprocess"]["min_component"] == 20
    assert json.loads((folder / "metrics.json").read_text())["inference"] == record


@pytest.mark.slow
def test_evaluate_scores_an_ensemble_and_records_tta(patch_run, tmp_path):
    _, run_dir = patch_run
    for name in ("a", "b"):
        shutil.copytree(run_dir, tmp_path / name)
    trained = json.loads((run_dir / "metrics.json").read_text())
    result = run_cli(
        "evaluate",
        f"run=[{tmp_path / 'a'},{tmp_path / 'b'}]",
        f"out={tmp_path / 'ens'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ensemble = json.loads((tmp_path / "ens" / "metrics.json").read_text())
    assert ensemble["inference"]["models"] == 2 and ensemble["inference"]["tta"] is False
    assert ensemble["per_patient"] == trained["per_patient"]
    assert ensemble["confusion_matrix"] == trained["confusion_matrix"]
    result = run_cli("evaluate", f"run={tmp_path / 'a'}", "tta=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["inference"]["tta"] is True
    result = run_cli("evaluate", f"run=[{tmp_path / 'a'},{tmp_path / 'b'}]", cwd=tmp_path)
    assert (
        result.returncode == 1
        and "needs out=DIR" in result.stderr
        and "Traceback" not in result.stderr
    )


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_evaluate_refuses_an_ensemble_of_runs_with_other_test_patients(tiny_trained_run, tmp_path):
    run_dir = tiny_trained_run
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    split = json.loads((other / "split.json").read_text())
    split["test"], split["train"] = split["train"][:1], split["train"][1:] + split["test"]
    (other / "split.json").write_text(json.dumps(split))
    result = run_cli(
        "evaluate", f"run=[{run_dir},{other}]", f"out={tmp_path / 'ens'}", cwd=tmp_path
    )
    assert (
        result.returncode == 1
        and "test patients differ" in result.stderr
        and "Traceback" not in result.stderr
    )


@pytest.mark.parametrize(
    "trained",
    # the session's tiny run in the fast lane; the fully convolutional patch run (trained for
    # this module) with the whole suite
    ["tiny_trained_run", pytest.param("patch_run", marks=pytest.mark.slow)],
)
@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_evaluate_ensembles_seeds_of_one_fold_whose_split_settings_differ(
    trained, request, tmp_path
):
    """Two seeds of one fold of a cross-validation: same test patients, other split seed (their
    validation draw). The ensemble is evaluated; only other test patients are refused."""
    found = request.getfixturevalue(trained)
    run_dir = tmp_path / "seed1"  # a copy: the shared runs are read only
    shutil.copytree(found[1] if trained == "patch_run" else found, run_dir)
    other = tmp_path / "seed2"
    shutil.copytree(run_dir, other)
    record_config_edit(other, lambda cfg: setattr(cfg.data.split, "seed", cfg.data.split.seed + 1))
    trained = json.loads((run_dir / "metrics.json").read_text())
    result = run_cli(
        "evaluate", f"run=[{run_dir},{other}]", f"out={tmp_path / 'ens'}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ensemble = json.loads((tmp_path / "ens" / "metrics.json").read_text())
    assert ensemble["per_patient"] == trained["per_patient"]  # two copies of one model


@pytest.mark.slow
def test_test_zero_trains_on_every_patient_then_predicts(tmp_path):
    out = tmp_path / "outputs"
    out.mkdir()
    run_dir = out / "all"
    result = run_cli(
        "train",
        "debug=tiny",
        *SMALL_UNET,
        "trainer.epochs=2",
        "data.split.train=null",
        "data.split.val=0",
        "data.split.test=0",
        f"paths.output_root={out}",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    split = json.loads((run_dir / "split.json").read_text())
    assert split["test"] == [] and split["val"] == [] and len(split["train"]) == 6
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
    assert json.loads((run_dir / "metrics.json").read_text())["test_cases"] == []
    assert not (out / "experiments.csv").exists()  # nothing was scored, so no table row
    best = json.loads((run_dir / "checkpoints" / "best.json").read_text())
    assert best["epoch"] == 2  # without validation the latest epoch is kept
    result = run_cli(
        "predict",
        f"run={run_dir}",
        f"input={synthetic_root(out)}",
        f"output={tmp_path / 'p'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(segmentations(tmp_path / "p")) == 6
    result = run_cli("table", str(run_dir), f"out={tmp_path / 'table'}", cwd=tmp_path)
    assert result.returncode == 0 and "1 completed" in result.stdout, result.stderr[-2000:]


@pytest.mark.slow
def test_a_kfold_sweep_tests_every_patient_once_and_is_summarised(tmp_path):
    out = tmp_path / "outputs"
    out.mkdir()
    sweep = out / "cv"
    result = run_cli(
        "train",
        "-m",
        "debug=tiny",
        *SMALL_UNET,
        "trainer.epochs=1",
        "data.split.folds=3",
        "data.split.fold=range(3)",
        "data.split.val=0",
        f"paths.output_root={out}",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=fold${data.split.fold}",
        cwd=tmp_path,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    tested = []
    for fold in range(3):
        split = json.loads((sweep / f"fold{fold}" / "split.json").read_text())
        assert not set(split["train"]) & set(split["test"])
        tested += split["test"]
    assert len(tested) == len(set(tested)) == 6
    result = run_cli("cv-summary", str(sweep), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((sweep / "cv_summary.json").read_text())
    assert [r["fold"] for r in summary["rows"]] == [0, 1, 2]
    assert summary["summary"]["folds_completed"] == 3
    wt = [r["WT_dice"] for r in summary["rows"]]
    assert summary["summary"]["WT_dice"]["mean"] == pytest.approx(np.mean(wt))
    assert summary["summary"]["WT_dice"]["sd"] == pytest.approx(np.std(wt, ddof=1))
    assert "mean ± sd (3 folds)" in (sweep / "cv_summary.md").read_text()
