"""Case discovery: both naming schemes, nesting, incomplete folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from brats_seg.data.discovery import MODALITIES, file_name, find_case, find_cases, parse_file_name
from brats_seg.errors import DataError


def touch_case(
    folder: Path, case_id: str, convention: str, keys=(*MODALITIES, "seg"), ext=".nii.gz"
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for key in keys:
        (folder / file_name(case_id, key, convention, ext)).write_bytes(b"")


def test_parse_file_names_of_both_conventions():
    assert parse_file_name("BraTS2021_00000_t1ce.nii.gz") == (
        "BraTS2021_00000",
        "t1ce",
        "brats2021",
    )
    assert parse_file_name("BraTS2021_00000_t1.nii") == ("BraTS2021_00000", "t1", "brats2021")
    assert parse_file_name("Brats18_2013_2_1_flair.nii.gz") == (
        "Brats18_2013_2_1",
        "flair",
        "brats2021",
    )
    assert parse_file_name("BraTS-GLI-00000-000-t2f.nii.gz") == (
        "BraTS-GLI-00000-000",
        "flair",
        "brats2023",
    )
    assert parse_file_name("BraTS-GLI-00000-000-t1c.nii.gz") == (
        "BraTS-GLI-00000-000",
        "t1ce",
        "brats2023",
    )
    assert parse_file_name("BraTS-GLI-00000-000-t1n.nii.gz") == (
        "BraTS-GLI-00000-000",
        "t1",
        "brats2023",
    )
    assert parse_file_name("BraTS-GLI-00000-000-seg.nii.gz") == (
        "BraTS-GLI-00000-000",
        "seg",
        "brats2023",
    )
    assert parse_file_name("BraTS2021_00000_pred.nii.gz") is None
    assert parse_file_name("notes.txt") is None


def test_nested_cases_of_both_conventions_in_channel_order(tmp_path):
    touch_case(tmp_path / "HGG" / "Brats17_A_1", "Brats17_A_1", "brats2021")
    touch_case(tmp_path / "LGG" / "deeper" / "Brats17_B_1", "Brats17_B_1", "brats2021", ext=".nii")
    touch_case(
        tmp_path / "BraTS-GLI-00001-000", "BraTS-GLI-00001-000", "brats2023", keys=MODALITIES
    )
    cases = find_cases(tmp_path)
    assert [c.case_id for c in cases] == ["BraTS-GLI-00001-000", "Brats17_A_1", "Brats17_B_1"]
    gli, a, b = cases
    assert gli.convention == "brats2023" and gli.seg is None
    assert list(gli.images) == ["t1", "t1ce", "t2", "flair"]
    assert gli.images["t2"].name == "BraTS-GLI-00001-000-t2w.nii.gz"
    assert a.convention == "brats2021" and a.seg.name == "Brats17_A_1_seg.nii.gz"
    assert (
        b.images["flair"] == tmp_path / "LGG" / "deeper" / "Brats17_B_1" / "Brats17_B_1_flair.nii"
    )
    assert a.files[-1] == a.seg and len(a.files) == 5


def test_missing_modality_names_folder_and_modality(tmp_path):
    folder = tmp_path / "Brats18_X_1"
    touch_case(folder, "Brats18_X_1", "brats2021", keys=("t1", "t1ce", "flair", "seg"))
    with pytest.raises(DataError) as err:
        find_cases(tmp_path)
    message = str(err.value)
    assert "\n" not in message and str(folder) in message and "t2" in message


def test_no_case_names_the_root(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(DataError, match=str(tmp_path)):
        find_cases(tmp_path)
    with pytest.raises(DataError, match="no such folder"):
        find_cases(tmp_path / "absent")


def test_lone_segmentation_is_not_a_case(tmp_path):
    touch_case(tmp_path / "a", "Brats18_A_1", "brats2021")
    touch_case(tmp_path / "preds", "Brats18_A_1_pred", "brats2021", keys=("seg",))
    assert [c.case_id for c in find_cases(tmp_path)] == ["Brats18_A_1"]


def test_same_case_id_in_two_folders_is_an_error(tmp_path):
    touch_case(tmp_path / "one" / "Brats18_A_1", "Brats18_A_1", "brats2021")
    touch_case(tmp_path / "two" / "Brats18_A_1", "Brats18_A_1", "brats2021")
    with pytest.raises(DataError, match="occurs twice"):
        find_cases(tmp_path)


def test_find_case_single_folder(tmp_path):
    folder = tmp_path / "BraTS-GLI-00002-000"
    touch_case(folder, "BraTS-GLI-00002-000", "brats2023")
    case = find_case(folder)
    assert case.case_id == "BraTS-GLI-00002-000" and case.seg is not None
    assert find_cases(folder) == [case]
    with pytest.raises(DataError, match="no BraTS case in this folder"):
        find_case(tmp_path)
    touch_case(folder, "BraTS-GLI-00003-000", "brats2023")
    with pytest.raises(DataError, match="holds 2 cases"):
        find_case(folder)


def test_real_root(real_data_root, real_cases):
    cases = {c.case_id: c for c in find_cases(real_data_root)}
    assert sorted(cases) == sorted(real_cases)  # the case folders PROVENANCE.md lists
    assert cases["BraTS-GLI-00000-000"].convention == "brats2023"
    assert cases["Brats18_2013_2_1"].convention == "brats2021"
    assert all(c.seg is not None for c in cases.values())
