"""NIfTI loading and validation, label conventions."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from brats_seg.data import nifti
from brats_seg.data.discovery import find_case
from brats_seg.data.labels import labels_to_classes, to_convention
from brats_seg.data.nifti import write_nifti
from brats_seg.errors import DataError

from conftest import blob_case, write_case

SHAPE = (32, 32, 16)


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.fixture()
def tiny():
    return blob_case(SHAPE, seed=3)


def test_load_case_returns_images_classes_and_geometry(tmp_path, tiny):
    image, classes = tiny
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    written = write_case(tmp_path / "c", "Brats18_T_1", image, classes, affine=affine)
    before = nifti.decode_count()
    loaded = nifti.load_case(written)
    assert nifti.decode_count() - before == 5
    assert loaded.image.shape == SHAPE + (4,) and loaded.image.dtype == np.float32
    np.testing.assert_array_equal(loaded.image, image)
    np.testing.assert_array_equal(loaded.seg, classes)
    assert loaded.seg.dtype == np.uint8
    np.testing.assert_allclose(loaded.affine, affine)
    assert loaded.spacing == (2.0, 2.0, 3.0)
    assert loaded.convention == "brats2021" and loaded.case_id == "Brats18_T_1"


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("convention", ["brats2021", "brats2023"])
def test_label_mapping_per_dtype(tmp_path, tiny, dtype, convention):
    image, classes = tiny
    case = write_case(
        tmp_path,
        "Case-1" if convention == "brats2023" else "Case_1",
        image,
        classes,
        convention=convention,
        seg_dtype=dtype,
    )
    labels_on_disk = np.asanyarray(nib.load(str(case.seg)).dataobj)
    et_label = 4 if convention == "brats2021" else 3
    assert labels_on_disk.dtype == dtype
    assert set(np.unique(labels_on_disk).tolist()) == {0, 1, 2, et_label}
    loaded = nifti.load_case(case)
    np.testing.assert_array_equal(loaded.seg, classes)


def test_labels_to_classes_rounds_floats_and_rejects_other_values():
    labels = np.array([0.0, 1.0000001, 1.9999, 4.0], dtype=np.float32)
    np.testing.assert_array_equal(labels_to_classes(labels, "brats2021", "s"), [0, 1, 2, 3])
    with pytest.raises(DataError, match="s: unexpected label value.*3"):
        labels_to_classes(np.array([0, 3], np.uint8), "brats2021", "s")
    with pytest.raises(DataError, match="s: label 4 without label 3 .* reads two ways"):
        labels_to_classes(np.array([0, 4], np.int16), "brats2023", "s")
    with pytest.raises(DataError, match="unexpected label value.*-1"):
        labels_to_classes(np.array([0, -1], np.int16), "brats2021", "s")
    with pytest.raises(DataError, match="non-finite"):
        labels_to_classes(np.array([0, np.nan], np.float32), "brats2021", "s")


def test_to_convention_inverts_the_mapping():
    classes = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    np.testing.assert_array_equal(to_convention(classes, "brats2021"), [[0, 1], [2, 4]])
    np.testing.assert_array_equal(to_convention(classes, "brats2023"), [[0, 1], [2, 3]])
    for convention in ("brats2021", "brats2023"):
        back = labels_to_classes(to_convention(classes, convention), convention, "x")
        np.testing.assert_array_equal(back, classes)


# --- bad cases: each is one line naming the file ----------------------------------------------


def test_truncated_gzip_is_reported_at_data_access(tmp_path, tiny):
    image, classes = tiny
    case = write_case(tmp_path, "Case_1", image, classes)
    data = case.images["t2"].read_bytes()
    case.images["t2"].write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as err:
        nifti.load_case(case)
    message = one_line(err)
    assert str(case.images["t2"]) in message and "corrupt or truncated NIfTI" in message


def test_garbage_and_empty_files_are_reported(tmp_path, tiny):
    image, classes = tiny
    case = write_case(tmp_path, "Case_1", image, classes)
    case.images["t1"].write_bytes(gzip.compress(b"not a nifti file at all"))
    with pytest.raises(DataError, match="corrupt or truncated NIfTI") as err:
        nifti.load_case(case)
    assert str(case.images["t1"]) in one_line(err)
    case.images["t1"].write_bytes(b"")
    with pytest.raises(DataError, match="corrupt or truncated NIfTI"):
        nifti.load_case(case)


def test_seg_with_label_5(tmp_path, tiny):
    image, classes = tiny
    case = write_case(tmp_path, "Case_1", image, classes)
    labels = to_convention(classes, "brats2021")
    labels[0, 0, 0] = 5
    write_nifti(case.seg, labels)
    with pytest.raises(DataError) as err:
        nifti.load_case(case)
    message = one_line(err)
    assert str(case.seg) in message and "5" in message


def test_mismatched_shapes(tmp_path, tiny):
    image, classes = tiny
    case = write_case(tmp_path, "Case_1", image, classes)
    write_nifti(case.images["flair"], image[:, :, :12, 3].astype(np.int16))
    with pytest.raises(DataError) as err:
        nifti.load_case(case)
    assert str(case.images["flair"]) in one_line(err) and "shape" in str(err.value)
    case = write_case(tmp_path / "b", "Case_2", image, classes)
    write_nifti(case.seg, to_convention(classes[:30], "brats2021"))
    with pytest.raises(DataError, match="shape") as err:
        nifti.load_case(case)
    assert str(case.seg) in one_line(err)


def test_nan_voxel(tmp_path, tiny):
    image, classes = tiny
    case = write_case(tmp_path, "Case_1", image, classes)
    t1ce = image[..., 1].copy()
    t1ce[5, 5, 5] = np.nan
    write_nifti(case.images["t1ce"], t1ce)
    with pytest.raises(DataError, match="non-finite") as err:
        nifti.load_case(case)
    assert str(case.images["t1ce"]) in one_line(err)


def test_mismatched_affines(tmp_path, tiny):
    image, classes = tiny
    case = write_case(tmp_path, "Case_1", image, classes)
    shifted = np.eye(4)
    shifted[0, 3] = 5.0
    write_nifti(case.images["t2"], image[..., 2].astype(np.int16), affine=shifted)
    with pytest.raises(DataError, match="affine") as err:
        nifti.load_case(case)
    assert str(case.images["t2"]) in one_line(err)


def test_tiny_affine_differences_are_tolerated(tmp_path, tiny):
    image, classes = tiny
    case = write_case(tmp_path, "Case_1", image, classes, affine=np.eye(4))
    nudged = np.eye(4)
    nudged[1, 3] = 1e-5
    write_nifti(case.images["t2"], image[..., 2].astype(np.int16), affine=nudged)
    assert nifti.load_case(find_case(tmp_path)).image.shape == SHAPE + (4,)


def test_real_seg_dtypes_map_to_provenance_counts(real_data_root):
    """Each real seg has a different dtype (uint8, uint16, int16, float32).

    Counts from PROVENANCE.md.
    """

    expected = {  # case: (dtype on disk, voxels of class 1, 2, 3)
        "BraTS2021_00014": (np.uint8, 2, 35799, 2557),
        "BraTS2021_00019": (np.uint16, 1605, 131017, 10375),
        "Brats18_2013_2_1": (np.int16, 4514, 34894, 21677),
        "BraTS-GLI-00000-000": (np.float32, 11738, 12836, 32731),
    }
    for case_id, (dtype, *counts) in expected.items():
        case = find_case(real_data_root / case_id)
        raw, _ = nifti.read_nifti(case.seg)
        assert raw.dtype == dtype
        classes = labels_to_classes(raw, case.convention, str(case.seg))
        assert np.bincount(classes.ravel(), minlength=4)[1:].tolist() == counts
