"""The crop on the real BraTS cases: what a box cuts is counted, brain cuts are warned, tumour cuts
refused (issue 14, item 3)."""

from __future__ import annotations

import pytest

from brats_seg.config import compose, group_defaults
from brats_seg.data.dataset import prepare_data
from brats_seg.data.discovery import find_cases
from brats_seg.data.nifti import load_case
from brats_seg.data.preprocess import preprocess_case
from brats_seg.data.settings import PreprocessSettings
from brats_seg.errors import DataError

from conftest import preprocess_settings

# Measured with the old default [192, 160] (160 on array axis 1, anterior-posterior): brain voxels
# cut per case, and the 54 tumour voxels it cuts from BraTS2021_00000 (= BraTS-GLI-00000-000).
OLD_CUT_BRAIN = {
    "BraTS-GLI-00000-000": 6375,
    "BraTS2021_00000": 6375,
    "BraTS2021_00014": 17316,
    "BraTS2021_00019": 11441,
    "Brats18_2013_2_1": 26346,
}
OLD_CUT_TUMOUR = {"BraTS-GLI-00000-000": 54, "BraTS2021_00000": 54}


@pytest.fixture(scope="module")
def loaded_cases(real_data_root):
    return [load_case(case) for case in find_cases(real_data_root)]


def crop_cfg(size) -> dict:
    """``data.preprocess`` with a crop of ``size``."""
    crop = {"enabled": True, "size": size}
    return {**group_defaults("data", "brats")["preprocess"], "crop": crop}


def crop(size):
    return preprocess_settings(crop_size=tuple(size))


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_default_and_row_22_crop_cut_nothing_of_the_real_cases(loaded_cases):
    for overrides in ([], ["experiment=e22_croped_4channel_unet_nobridge"]):
        cfg = compose("train", ["data=brats", "data.root=/nowhere", *overrides])
        assert list(cfg.data.preprocess.crop.size) == [160, 192]
    e22 = compose(
        "train", ["data=brats", "data.root=/x", "experiment=e22_croped_4channel_unet_nobridge"]
    )
    for loaded in loaded_cases:
        prep = preprocess_case(loaded, PreprocessSettings.from_data_cfg(e22.data))
        assert prep.x.shape[1:3] == (160, 192)
        assert (prep.cut_brain, prep.cut_tumour) == (0, 0), loaded.case_id


def test_old_default_cut_counts(loaded_cases):
    by_id = {loaded.case_id: loaded for loaded in loaded_cases}
    assert set(OLD_CUT_BRAIN) <= set(by_id)
    for case_id, brain in OLD_CUT_BRAIN.items():
        prep = preprocess_case(by_id[case_id], crop((192, 160)))
        assert prep.cut_brain == brain, case_id
        assert prep.cut_tumour == OLD_CUT_TUMOUR.get(case_id, 0), case_id


def test_training_data_whose_tumour_is_cut_is_refused_naming_the_case(real_data_root, tmp_path):
    cfg = {
        "name": "brats",
        "root": str(real_data_root),
        "cache_dir": str(tmp_path / "cache"),
        "workers": 1,
        "cases": ["BraTS2021_00000", "BraTS2021_00014"],
        "preprocess": crop_cfg([192, 160]),
        "selection": {"rule": "threshold", "threshold": 1000},
    }
    with pytest.raises(DataError) as err:
        prepare_data(cfg)
    message = str(err.value)
    assert "case BraTS2021_00000" in message and "cuts 54 tumour voxel(s)" in message
    assert "data.preprocess.crop.size" in message and "\n" not in message
    assert not list((tmp_path / "cache").glob("brats-*"))


def test_brain_cut_is_warned_and_recorded_in_the_cache_meta(real_data_root, tmp_path, capsys):
    cfg = {
        "name": "brats",
        "root": str(real_data_root),
        "cache_dir": str(tmp_path / "cache"),
        "workers": 1,
        "cases": ["BraTS2021_00014"],
        "preprocess": crop_cfg([192, 160]),
        "selection": {"rule": "threshold", "threshold": 1000},
    }
    prepared = prepare_data(cfg)
    assert prepared.case_meta("BraTS2021_00014")["crop_cut"] == {"brain": 17316, "tumour": 0}
    err = capsys.readouterr().err
    assert "case BraTS2021_00014: the crop box" in err and "cuts 17316 brain voxel(s)" in err


def test_row_22_parameter_count_at_its_crop_size():
    """The U-Net is fully convolutional: the count at the 160x192 crop is the study's."""
    import keras

    from brats_seg.models import build_model

    cfg = compose(
        "train", ["data=brats", "data.root=/x", "experiment=e22_croped_4channel_unet_nobridge"]
    )
    keras.backend.clear_session()
    assert list(cfg.data.preprocess.crop.size) == [160, 192]
    model = build_model(cfg.model, (*cfg.data.preprocess.crop.size, 4))
    assert model.count_params() == cfg.study.expected_params == 15826116
