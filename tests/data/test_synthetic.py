"""The built-in synthetic BraTS-like cases.

Anatomy, contrasts, files, the cache entry point and `brats-seg synth`.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from brats_seg.data import synthetic as syn
from brats_seg.errors import ConfigError

from conftest import REPO_ROOT, run_cli

SHAPE = (48, 48, 24)


def _tissue_mean(image: np.ndarray, tissue: np.ndarray, code: int) -> float:
    values = image[tissue == code]
    assert values.size > 0, f"tissue {syn.TISSUE_NAMES[code]} is missing from the phantom"
    return float(values.mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_case_has_brats_shapes_dtypes_and_labels(seed):
    images, seg = syn.make_case(SHAPE, seed)
    assert sorted(images) == sorted(["t1", "t1ce", "t2", "flair"])
    for name, image in images.items():
        assert image.shape == SHAPE and image.dtype == np.int16, name
        assert image.max() > 100, f"{name}: intensities should be on a raw MRI scale"
    assert seg.shape == SHAPE and seg.dtype == np.uint8
    assert set(np.unique(seg).tolist()) == {0, 1, 2, 4}


def test_background_is_exactly_zero_outside_one_solid_brain():
    images, seg = syn.make_case(SHAPE, 3)
    masks = [images[m] != 0 for m in syn.MODALITIES]
    brain = masks[0]
    for mask in masks[1:]:
        assert np.array_equal(mask, brain), "every modality must share the brain mask"
    assert 0.1 < brain.mean() < 0.6
    assert np.all(brain[seg > 0]), "tumour labels must lie inside the brain"
    for axis in range(
        3
    ):  # skull-stripped head inside the field of view: the faces of the volume are empty
        assert not np.take(brain, [0, -1], axis=axis).any()
    _, components = ndimage.label(brain)
    assert components == 1
    assert np.array_equal(ndimage.binary_fill_holes(brain), brain)


def test_make_case_is_anatomy_then_rendering_and_brain_matches_tissue():
    rng = np.random.default_rng(11)
    anatomy = syn.make_anatomy(SHAPE, rng)
    images = syn.render_images(anatomy, rng)
    again_images, again_seg = syn.make_case(SHAPE, 11)
    assert np.array_equal(anatomy.seg(), again_seg)
    for name in syn.MODALITIES:
        assert np.array_equal(images[name], again_images[name])
        assert np.array_equal(images[name] != 0, anatomy.tissue != syn.BACKGROUND)


def test_tissue_contrasts_point_the_right_way():
    rng = np.random.default_rng(5)
    anatomy = syn.make_anatomy((64, 64, 32), rng)
    images = syn.render_images(anatomy, rng)
    t = anatomy.tissue

    def mean(name, code):
        return _tissue_mean(images[name], t, code)

    assert mean("t1", syn.WM) > mean("t1", syn.GM) > mean("t1", syn.CSF)
    assert mean("t2", syn.CSF) > mean("t2", syn.GM) > mean("t2", syn.WM)
    assert mean("flair", syn.GM) > mean("flair", syn.WM) > mean("flair", syn.CSF)
    # tumour: oedema bright on T2 and FLAIR, enhancing rim bright on T1ce, necrosis dark on T1ce,
    # core dark on T1
    assert mean("flair", syn.EDEMA) > 1.5 * mean("flair", syn.WM)
    assert mean("t2", syn.EDEMA) > 1.5 * mean("t2", syn.WM)
    assert mean("t1ce", syn.ENHANCING) > 2 * mean("t1ce", syn.NECROSIS)
    assert mean("t1ce", syn.ENHANCING) > 1.4 * mean("t1ce", syn.WM)
    assert mean("t1", syn.NECROSIS) < mean("t1", syn.ENHANCING) < mean("t1", syn.WM)
    # and the segmentation is exactly the tumour tissues
    seg = anatomy.seg()
    assert np.array_equal(seg == 1, t == syn.NECROSIS)
    assert np.array_equal(seg == 2, t == syn.EDEMA)
    assert np.array_equal(seg == 4, t == syn.ENHANCING)


def test_same_seed_same_case_other_seed_other_case():
    a_images, a_seg = syn.make_case(SHAPE, 7)
    b_images, b_seg = syn.make_case(SHAPE, 7)
    c_images, c_seg = syn.make_case(SHAPE, 8)
    assert np.array_equal(a_seg, b_seg)
    assert all(np.array_equal(a_images[m], b_images[m]) for m in syn.MODALITIES)
    assert not np.array_equal(a_seg, c_seg)
    assert not np.array_equal(a_images["flair"], c_images["flair"])
    # BraTS is not intensity-normalised: the scale differs from case to case
    assert np.percentile(a_images["t1ce"][a_images["t1ce"] > 0], 50) != np.percentile(
        c_images["t1ce"][c_images["t1ce"] > 0], 50
    )


def test_default_synthetic_config_gives_slices_above_its_threshold():
    """configs/data/synthetic.yaml: the study's rule must keep the tumour's core slices.

    Of most cases, not all: as in BraTS, small tumours have no slice above the threshold, so a
    few of the 20 cases give none.
    """
    from omegaconf import OmegaConf

    data = OmegaConf.load(REPO_ROOT / "configs" / "data" / "synthetic.yaml")
    shape, threshold, cases = (
        tuple(data.synth.shape),
        int(data.selection.threshold),
        int(data.synth.cases),
    )
    kept = []
    for index in range(cases):
        _, seg = syn.make_case(shape, [int(data.synth.seed), index])
        per_class = np.stack([np.count_nonzero(seg == label, axis=(0, 1)) for label in (1, 2, 4)])
        kept.append(int((per_class > threshold).any(axis=0).sum()))
    assert sum(k >= 2 for k in kept) >= 0.85 * cases, kept
    assert max(kept) <= 0.75 * shape[2], kept
    assert 5 * cases <= sum(kept), kept


def test_write_case_writes_brats_like_nifti(tmp_path):
    shape = (40, 36, 20)
    folder = syn.write_case(tmp_path, "SynBraTS_00042", shape, seed=[4, 2])
    assert folder == tmp_path / "SynBraTS_00042"
    expected_images, expected_seg = syn.make_case(shape, np.random.default_rng([4, 2]))
    affine = np.array(
        [[-1, 0, 0, 0], [0, -1, 0, shape[1] - 1], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float
    )
    for name in (*syn.MODALITIES, "seg"):
        path = folder / f"SynBraTS_00042_{name}.nii.gz"
        image = nib.load(path)
        data = np.asanyarray(image.dataobj)
        assert image.shape == shape
        assert data.dtype == (np.uint8 if name == "seg" else np.int16)
        np.testing.assert_array_equal(image.affine, affine)
        assert nib.aff2axcodes(image.affine) == ("L", "P", "S")
        assert image.header.get_zooms() == (1.0, 1.0, 1.0)
        np.testing.assert_array_equal(
            data, expected_seg if name == "seg" else expected_images[name]
        )
    assert [p.name for p in tmp_path.iterdir()] == [
        "SynBraTS_00042"
    ]  # no temporary folder left behind


def test_dataset_is_reproducible_resumable_and_described(tmp_path):
    root = syn.write_synthetic_dataset(tmp_path / "set", cases=3, shape=(32, 32, 16), seed=5)
    ids = ["SynBraTS_00000", "SynBraTS_00001", "SynBraTS_00002"]
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [".brats-seg-output.json", *ids, "dataset.json"]
    )
    description = json.loads((root / "dataset.json").read_text())
    assert (
        description["cases"] == 3
        and description["shape"] == [32, 32, 16]
        and description["seed"] == 5
    )
    assert description["case_ids"] == ids

    # case i comes from the seed sequence (seed, i), whatever else is generated
    alone = syn.write_case(tmp_path / "alone", "x", (32, 32, 16), seed=[5, 2])
    first = np.asanyarray(nib.load(root / ids[2] / f"{ids[2]}_flair.nii.gz").dataobj)
    np.testing.assert_array_equal(first, np.asanyarray(nib.load(alone / "x_flair.nii.gz").dataobj))

    # resumable: complete cases are kept as they are, a missing one is regenerated identically
    kept = root / ids[0] / f"{ids[0]}_t1.nii.gz"
    kept_mtime = kept.stat().st_mtime_ns
    (root / ids[1] / f"{ids[1]}_seg.nii.gz").unlink()
    seg_before = np.asanyarray(nib.load(root / ids[2] / f"{ids[2]}_seg.nii.gz").dataobj)
    syn.write_synthetic_dataset(root, cases=3, shape=(32, 32, 16), seed=5)
    assert kept.stat().st_mtime_ns == kept_mtime
    assert syn.is_complete(root / ids[1], ids[1])
    np.testing.assert_array_equal(
        seg_before, np.asanyarray(nib.load(root / ids[2] / f"{ids[2]}_seg.nii.gz").dataobj)
    )


def test_refuses_to_mix_other_settings_into_a_folder(tmp_path):
    root = syn.write_synthetic_dataset(tmp_path / "set", cases=2, shape=(32, 32, 16), seed=3)
    before = (root / "dataset.json").read_text()
    for options, message in (
        ({"cases": 2, "shape": (32, 32, 16), "seed": 4}, "seed=3,0"),
        ({"cases": 2, "shape": (32, 32, 20), "seed": 3}, "32x32x16"),
        ({"cases": 1, "shape": (32, 32, 16), "seed": 3}, "cases>=2"),
    ):
        with pytest.raises(ConfigError, match=message):
            syn.write_synthetic_dataset(root, **options)
    assert (root / "dataset.json").read_text() == before
    # growing the same set is fine: case i does not depend on how many cases there are
    syn.write_synthetic_dataset(root, cases=3, shape=(32, 32, 16), seed=3)
    assert json.loads((root / "dataset.json").read_text())["cases"] == 3


def test_parallel_generation_matches_serial(tmp_path, monkeypatch):
    monkeypatch.setattr(syn, "POOL_MIN_VOXELS", 0)  # force the worker pool even for a tiny set
    serial = syn.write_synthetic_dataset(
        tmp_path / "serial", cases=2, shape=(32, 32, 16), seed=9, workers=1
    )
    parallel = syn.write_synthetic_dataset(
        tmp_path / "parallel", cases=2, shape=(32, 32, 16), seed=9, workers=2
    )
    for case in ("SynBraTS_00000", "SynBraTS_00001"):
        for name in ("t2", "seg"):
            a = np.asanyarray(nib.load(serial / case / f"{case}_{name}.nii.gz").dataobj)
            b = np.asanyarray(nib.load(parallel / case / f"{case}_{name}.nii.gz").dataobj)
            np.testing.assert_array_equal(a, b)


def test_the_project_loader_reads_synthetic_cases(tmp_path):
    from brats_seg.data.discovery import find_cases
    from brats_seg.data.nifti import load_case

    root = syn.write_synthetic_dataset(tmp_path, cases=2, shape=(32, 32, 16), seed=1)
    cases = find_cases(root)
    assert [c.case_id for c in cases] == ["SynBraTS_00000", "SynBraTS_00001"]
    assert all(c.convention == "brats2021" and c.seg is not None for c in cases)
    loaded = load_case(cases[0])
    raw_seg = np.asanyarray(nib.load(cases[0].seg).dataobj)
    assert loaded.image.shape == (32, 32, 16, 4)
    np.testing.assert_array_equal(loaded.seg == 3, raw_seg == 4)  # ET: BraTS label 4 -> class 3
    np.testing.assert_array_equal(loaded.seg == 1, raw_seg == 1)


@pytest.mark.parametrize("as_dictconfig", [False, True])
def test_ensure_synthetic_dataset_generates_once_into_the_cache(tmp_path, as_dictconfig):
    from omegaconf import OmegaConf

    data_cfg = {
        "name": "synthetic",
        "root": None,
        "cache_dir": str(tmp_path / "cache"),
        "workers": 1,
        "synth": {"cases": 2, "shape": [32, 32, 16], "seed": 3},
    }
    if as_dictconfig:
        data_cfg = OmegaConf.create(data_cfg)
    root = syn.ensure_synthetic_dataset(data_cfg)
    assert root == tmp_path / "cache" / "synthetic" / "2x32x32x16-seed3"
    assert json.loads((root / "dataset.json").read_text())["case_ids"] == [
        "SynBraTS_00000",
        "SynBraTS_00001",
    ]
    stamp = (root / "SynBraTS_00000" / "SynBraTS_00000_t1.nii.gz").stat().st_mtime_ns
    assert syn.ensure_synthetic_dataset(data_cfg) == root
    assert (root / "SynBraTS_00000" / "SynBraTS_00000_t1.nii.gz").stat().st_mtime_ns == stamp


def test_ensure_synthetic_dataset_returns_a_given_root_untouched(tmp_path):
    given = tmp_path / "mine"
    assert syn.ensure_synthetic_dataset({"root": str(given), "cache_dir": str(tmp_path)}) == given
    assert not given.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "cases, shape, message",
    [
        (0, [32, 32, 16], "data.synth.cases=0"),
        (2, [32, 32], "data.synth.shape=[32,32]"),
        (2, [31, 32, 16], "data.synth.shape=[31,32,16]"),
        (2, [32, 32, 15], "data.synth.shape=[32,32,15]"),
        (2, [32.5, 32, 16], "data.synth.shape=[32.5,32,16]"),
    ],
)
def test_bad_generator_options_name_the_option(tmp_path, cases, shape, message):
    data_cfg = {
        "root": None,
        "cache_dir": str(tmp_path),
        "synth": {"cases": cases, "shape": shape, "seed": 0},
    }
    with pytest.raises(ConfigError) as err:
        syn.ensure_synthetic_dataset(data_cfg)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_synth_command_writes_cases_and_nothing_else(tmp_path):
    result = run_cli("synth", "out=made", "cases=2", "shape=[32,32,16]", "seed=4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "wrote 2 synthetic cases" in result.stdout and "made" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "made"
    ]  # no .hydra, no log file, no outputs/
    assert sorted(p.name for p in (tmp_path / "made").iterdir()) == [
        ".brats-seg-output.json",
        "SynBraTS_00000",
        "SynBraTS_00001",
        "dataset.json",
    ]
    expected_images, _ = syn.make_case((32, 32, 16), np.random.default_rng([4, 1]))
    written = np.asanyarray(
        nib.load(tmp_path / "made" / "SynBraTS_00001" / "SynBraTS_00001_t1ce.nii.gz").dataobj
    )
    np.testing.assert_array_equal(written, expected_images["t1ce"])


def test_synth_command_rejects_bad_options_in_one_line(tmp_path):
    result = run_cli("synth", "cases=0", "out=never", cwd=tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cases=0" in lines[0], result.stderr
    assert list(tmp_path.iterdir()) == []
