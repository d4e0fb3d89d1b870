"""data.plane: slices cut in the axial, sagittal or coronal plane, put back in place, cached per
plane, and ensembles of runs of several planes (real NIfTI, real Keras on tiny U-Nets)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brats_seg.data.discovery import find_case
from brats_seg.data.labels import to_convention
from brats_seg.data.nifti import load_case
from brats_seg.data.planes import PLANES, slice_size, slices_to_volume, volume_to_slices
from brats_seg.data.preprocess import on_cached_grid, preprocess_case, restore_prediction
from brats_seg.data.settings import SelectionSettings

from conftest import (
    SMALL_UNET,
    blob_case,
    make_root,
    preprocess_settings,
    record_config_edit,
    run_cli,
    write_case,
)

# Three different sides (multiples of 16, so that every plane's slices fit a U-Net of fixed size):
# a plane mixed up with another shows as a wrong shape or a misplaced tumour.
SHAPE = (48, 32, 64)
# Not the writer's default: the prediction must carry the input's own geometry.
AFFINE = np.array(
    [[-0.75, 0, 0, 40.0], [0, -1.25, 0, 230.0], [0, 0, 1.5, -12.0], [0, 0, 0, 1.0]],
    dtype=np.float64,
)


def _stack_by_indexing(volume: np.ndarray, plane: str) -> np.ndarray:
    """The plane's slice stack written out with plain indexing (independent of planes.py)."""
    n = volume.shape[{"axial": 2, "sagittal": 0, "coronal": 1}[plane]]
    take = {
        "axial": lambda i: volume[:, :, i],
        "sagittal": lambda i: volume[i, :, :],
        "coronal": lambda i: volume[:, i, :],
    }[plane]
    return np.stack([take(i) for i in range(n)])


# ------------------------------------------------------------------------- arrays, no TensorFlow


def test_plane_round_trips_are_exact_on_arrays():
    volume = np.random.default_rng(0).normal(size=(5, 6, 7, 2)).astype(np.float32)
    sizes = {"axial": (5, 6), "sagittal": (6, 7), "coronal": (5, 7)}
    for plane in PLANES:
        stack = volume_to_slices(volume, plane)
        np.testing.assert_array_equal(stack, _stack_by_indexing(volume, plane))
        np.testing.assert_array_equal(slices_to_volume(stack, plane), volume)
        assert slice_size(volume.shape, plane) == sizes[plane] == stack.shape[1:3]


@pytest.mark.parametrize("crop", [None, [32, 32]])
def test_every_plane_cuts_the_axial_data_and_puts_labels_back_in_place(tmp_path, crop):
    image, classes = blob_case(SHAPE, seed=3)
    loaded = load_case(write_case(tmp_path / "Brats18_P_1", "Brats18_P_1", image, classes))
    cfg = preprocess_settings(fifth_channel="flair_edges", crop_size=tuple(crop) if crop else None)
    axial = preprocess_case(loaded, cfg)
    # the axial slices as a volume (X', Y', Z, C), cropped like every plane's
    x_volume = np.moveaxis(axial.x, 0, 2)
    for plane in ("sagittal", "coronal"):
        prep = preprocess_case(loaded, replace(cfg, plane=plane))
        assert prep.plane == plane and prep.crop_box == axial.crop_box
        assert prep.cut_tumour == 0
        # the four modalities are the axial ones, sliced in the other plane; the fifth channel's
        # edges are taken within the plane's slices
        np.testing.assert_array_equal(prep.x[..., :4], _stack_by_indexing(x_volume[..., :4], plane))
        assert not np.allclose(prep.x[..., 4], _stack_by_indexing(x_volume[..., 4], plane))
        np.testing.assert_array_equal(
            prep.y, _stack_by_indexing(on_box(classes, crop, axial), plane)
        )
        restored = restore_prediction(prep.y, prep.crop_box, prep.full_shape, plane)
        np.testing.assert_array_equal(restored, classes)
        np.testing.assert_array_equal(on_cached_grid(classes, prep.crop_box, plane), prep.y)


def on_box(classes, crop, prep):
    if not crop:
        return classes
    x0, x1, y0, y1 = prep.crop_box
    return classes[x0:x1, y0:y1]


def test_the_cache_is_keyed_by_plane(tmp_path):
    from brats_seg.data import cache
    from brats_seg.data.dataset import PreparedData, prepare_data
    from brats_seg.data.discovery import find_cases

    root = make_root(tmp_path / "root")
    cases = find_cases(root)
    tumour = SelectionSettings("tumour", 0)
    keys = {
        plane: cache.cache_key(cases, preprocess_settings(plane=plane), tumour) for plane in PLANES
    }
    assert len(set(keys.values())) == 3
    # axial keeps the key it had before there were planes: nothing about the plane is hashed
    assert "plane" not in preprocess_settings().as_dict()
    data = {
        "name": "brats",
        "root": str(root),
        "cache_dir": str(tmp_path / "cache"),
        "selection": {"rule": "tumour"},
    }
    sagittal = prepare_data({**data, "plane": "sagittal"})
    axial = prepare_data(data)
    assert sagittal.cache_dir != axial.cache_dir
    assert sagittal.cache_dir.name.endswith(keys["sagittal"])
    reopened = PreparedData.open(sagittal.cache_dir)
    assert reopened.preprocess.plane == "sagittal" and axial.preprocess.plane == "axial"
    # blob cases are 32 x 32 x 16: axial slices 32x32, sagittal 32x16
    assert axial.input_shape[:2] == (32, 32) and reopened.input_shape[:2] == (32, 16)


def test_an_unknown_plane_is_refused_naming_the_option():
    result = run_cli("train", "data.plane=oblique")
    assert result.returncode != 0 and "data.plane" in result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------ trained runs (real Keras, CLI)


@pytest.fixture(scope="module")
def plane_runs(tmp_path_factory):
    """A U-Net of fixed size trained in the sagittal plane and a fully convolutional one trained on
    patches in the coronal plane, on the same synthetic cases and cache folder."""
    out = tmp_path_factory.mktemp("planes") / "outputs"
    out.mkdir()
    runs = {}
    for plane, options in (
        ("sagittal", []),
        ("coronal", ["data.patch.size=[32,32]", "data.sampling.foreground=0.5"]),
    ):
        runs[plane] = out / f"{plane}-run"
        result = run_cli(
            "train",
            "debug=tiny",
            f"data.synth.shape=[{','.join(map(str, SHAPE))}]",
            f"data.plane={plane}",
            *options,
            "trainer.epochs=2",
            "trainer.steps_per_epoch=8",
            "trainer.batch_size=8",
            "optimizer.lr=3e-3",
            *SMALL_UNET,
            f"paths.output_root={out}",
            f"hydra.run.dir={runs[plane]}",
            cwd=out.parent,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    return out, runs


def _new_case(folder: Path, seed: int = 7) -> Path:
    image, classes = blob_case(SHAPE, seed=seed)
    write_case(folder / "Brats18_NEW_1", "Brats18_NEW_1", image, classes, affine=AFFINE)
    return folder / "Brats18_NEW_1"


def _segmentation(folder: Path) -> nib.Nifti1Image:
    (path,) = sorted(folder.glob("*_seg.nii.gz"))
    return nib.load(str(path))


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_each_plane_has_its_own_cache(plane_runs):
    out, runs = plane_runs
    indexes = sorted((out / "cache").glob("synthetic-*/index.json"))
    planes = sorted(json.loads(p.read_text())["preprocess"].get("plane", "axial") for p in indexes)
    assert planes == ["coronal", "sagittal"]
    for plane, run_dir in runs.items():
        cfg = (run_dir / "config.yaml").read_text()
        assert f"plane: {plane}" in cfg


@pytest.mark.parametrize("plane", ["sagittal", "coronal"])
@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_a_run_of_each_plane_predicts_labels_in_place_on_the_input_grid(
    plane_runs, plane, tmp_path
):
    from omegaconf import OmegaConf

    from brats_seg.inference.slices import predict_slices
    from brats_seg.models.registry import divisor
    from brats_seg.runfolder import RunFolder

    _, runs = plane_runs
    case_dir = _new_case(tmp_path / "new")
    predicted = tmp_path / "predicted"
    result = run_cli(
        "predict",
        f"run={runs[plane]}",
        f"input={case_dir}",
        f"output={predicted}",
        "tta=false",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    written = _segmentation(predicted)
    source = nib.load(str(next(case_dir.glob("*_t1.nii.gz"))))
    assert written.shape == source.shape == SHAPE
    np.testing.assert_array_equal(written.affine, source.affine)
    np.testing.assert_array_equal(written.affine, AFFINE)

    # The same model and slice predictor on slices cut here by plain indexing of the axial
    # preprocessing, its classes put back by indexing: the prediction must be exactly that.
    loaded = load_case(find_case(case_dir))
    x_volume = np.moveaxis(preprocess_case(loaded, preprocess_settings()).x, 0, 2)
    stack = _stack_by_indexing(x_volume, plane)
    model = RunFolder(runs[plane]).load_best_model()
    div = divisor(OmegaConf.load(runs[plane] / "config.yaml").model)
    classes = predict_slices(model, stack, divisor=div, tta=False)
    expected = np.zeros(SHAPE, dtype=np.uint8)
    for i in range(len(stack)):
        if plane == "sagittal":
            expected[i, :, :] = classes[i]
        else:
            expected[:, i, :] = classes[i]
    labels = np.asarray(written.dataobj)
    assert np.count_nonzero(expected) > 0  # a prediction with tumour: the check is not vacuous
    assert np.count_nonzero(labels != to_convention(expected, loaded.case.convention)) == 0


def _symmetric_case(folder: Path, n: int = 32) -> Path:
    """A cube whose every voxel depends only on its (integer) squared distance from the centre: the
    same volume under any exchange of axes, so its slices are the same in every plane."""
    twice = 2 * np.arange(n) - (n - 1)  # twice the offset from the centre, exact integers
    r2 = twice[:, None, None] ** 2 + twice[None, :, None] ** 2 + twice[None, None, :] ** 2
    brain = r2 <= (2 * 13) ** 2
    classes = np.zeros((n, n, n), dtype=np.uint8)
    classes[r2 <= (2 * 7) ** 2] = 2
    classes[r2 <= (2 * 4) ** 2] = 3
    classes[r2 <= (2 * 2) ** 2] = 1
    image = np.zeros((n, n, n, 4), dtype=np.float32)
    for c in range(4):
        image[..., c] = np.where(brain, 100 * (c + 1) + (r2 * (c + 3)) % 37, 0)
    image[..., 3] += np.where(classes > 0, 120, 0)
    write_case(folder / "Brats18_SYM_1", "Brats18_SYM_1", image, classes, affine=AFFINE)
    return folder / "Brats18_SYM_1"


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_one_model_in_three_planes_equals_each_member_where_they_agree(plane_runs, tmp_path):

    from brats_seg.inference.predict import predict_cases

    _, runs = plane_runs
    case_dir = _symmetric_case(tmp_path / "sym")
    members = {}
    for plane in PLANES:  # the coronal run's (fully convolutional) model, as a run of each plane
        members[plane] = tmp_path / "members" / plane
        shutil.copytree(runs["coronal"], members[plane])
        record_config_edit(
            members[plane], lambda cfg, plane=plane: setattr(cfg.data, "plane", plane)
        )
    options = {"tta": False, "montage_slices": 0}
    single = {}
    for plane, run_dir in members.items():
        predict_cases(run_dir, case_dir, tmp_path / plane, **options)
        single[plane] = np.asarray(_segmentation(tmp_path / plane).dataobj)
    result = run_cli(
        "predict",
        f"run=[{','.join(str(members[p]) for p in PLANES)}]",
        f"input={case_dir}",
        f"output={tmp_path / 'ensemble'}",
        "tta=false",
        "montage_slices=0",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ensemble = np.asarray(_segmentation(tmp_path / "ensemble").dataobj)
    axial = single["axial"]
    # Every member saw the same slices, so each one's volume is the axial one with its axes
    # exchanged as its plane says: exact only if each plane is cut and put back where it belongs.
    np.testing.assert_array_equal(single["sagittal"], np.transpose(axial, (2, 0, 1)))
    np.testing.assert_array_equal(single["coronal"], np.transpose(axial, (0, 2, 1)))
    agree = (axial == single["sagittal"]) & (axial == single["coronal"])
    assert agree.mean() > 0.5 and np.any(agree & (axial > 0)) and not agree.all()
    np.testing.assert_array_equal(ensemble[agree], axial[agree])
    record = json.loads((tmp_path / "ensemble" / "inference.json").read_text())
    assert record["runs"] == [str(members[p].resolve()) for p in PLANES]


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_evaluate_scores_runs_of_two_planes_as_one_ensemble(plane_runs, tmp_path):
    out, runs = plane_runs
    result = run_cli(
        "evaluate",
        f"run=[{runs['sagittal']},{runs['coronal']}]",
        f"out={tmp_path / 'ens'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "ens" / "metrics.json").read_text())
    assert metrics["inference"]["planes"] == ["sagittal", "coronal"]
    assert metrics["inference"]["models"] == 2
    # the same ensemble through predict, on one test patient, scores the same up to the float16
    # rounding of evaluate's volume cache (predict reads the NIfTI files in float32); a plane put
    # back in the wrong place would score near 0
    case = metrics["per_patient"][0]["case"]
    (case_dir,) = [p for p in (out / "cache" / "synthetic").glob(f"*/{case}") if p.is_dir()]
    result = run_cli(
        "predict",
        f"run=[{runs['sagittal']},{runs['coronal']}]",
        f"input={case_dir}",
        f"output={tmp_path / 'predicted'}",
        "montage_slices=0",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    predicted = json.loads((tmp_path / "predicted" / "metrics.json").read_text())
    for region in ("WT", "TC", "ET"):
        assert predicted["per_patient"][0][region]["dice"] == pytest.approx(
            metrics["per_patient"][0][region]["dice"], abs=0.01
        )
    assert metrics["per_patient"][0]["WT"]["dice"] > 0.3


def test_the_three_plane_recipe_is_the_recipe_swept_over_the_planes():
    from omegaconf import OmegaConf

    from brats_seg.config import compose

    planes = compose(
        "train", ["recipe=real_cpu_planes", "data.root=/data/BraTS"], return_hydra_config=True
    )
    single = compose("train", ["recipe=real_cpu", "data.root=/data/BraTS"])
    assert planes.hydra.sweeper.params == {"data.plane": "axial,sagittal,coronal"}
    assert planes.sweep_name == planes.run_group == "real-cpu-planes"
    for key in ("data", "model", "loss", "optimizer", "trainer", "evaluate"):
        assert OmegaConf.to_container(planes[key], resolve=True) == OmegaConf.to_container(
            single[key], resolve=True
        ), key


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_evaluate_still_refuses_an_ensemble_of_other_preprocessing(plane_runs, tmp_path):

    _, runs = plane_runs
    other = tmp_path / "other"
    shutil.copytree(runs["sagittal"], other)
    record_config_edit(other, lambda cfg: setattr(cfg.data.preprocess, "normalization", "minmax"))
    result = run_cli(
        "evaluate", f"run=[{runs['coronal']},{other}]", f"out={tmp_path / 'ens'}", cwd=tmp_path
    )
    assert result.returncode == 1 and "data settings differ" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "ens").exists()
