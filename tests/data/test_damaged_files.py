"""A damaged file is named with its damage, not a symptom of it: a NIfTI header claiming a size
the file cannot hold (real files written byte by byte)."""

from __future__ import annotations

import gzip
import io

import nibabel as nib
import numpy as np
import pytest


def nifti_claiming(shape: tuple[int, int, int], voxels: int) -> bytes:
    """A NIfTI-1 file whose header claims ``shape`` but which holds ``voxels`` int16 voxels."""
    img = nib.Nifti1Image(np.ones((2, 2, 2), np.int16), np.eye(4))
    img.header.set_data_shape(shape)
    img.header.set_data_offset(352)  # what nibabel writes: the voxels follow the 348-byte header
    out = io.BytesIO()
    img.header.write_to(out)
    out.write(b"\0" * (int(img.header.get_data_offset()) - out.tell()))
    out.write(np.ones(voxels, np.int16).tobytes())
    return out.getvalue()


@pytest.mark.parametrize("name", ["case_flair.nii", "case_flair.nii.gz"])
def test_a_header_claiming_an_impossible_size_is_named(tmp_path, name):
    from brats_seg.data.nifti import read_nifti
    from brats_seg.errors import DataError

    data = nifti_claiming((30000, 30000, 2000), 512)
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(DataError) as caught:
        read_nifti(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: its header claims 30000x30000x2000 voxels of int16")
    assert "MemoryError" not in text


def test_a_truncated_uncompressed_nifti_says_how_much_it_holds(tmp_path):
    from brats_seg.data.nifti import read_nifti
    from brats_seg.errors import DataError

    path = tmp_path / "case_t1.nii"
    path.write_bytes(nifti_claiming((16, 16, 8), 100))
    with pytest.raises(DataError, match=r"holds 200 bytes of voxels \(truncated or a bad header\)"):
        read_nifti(path)


def test_an_intact_nifti_still_reads(tmp_path):
    from brats_seg.data.nifti import read_nifti

    path = tmp_path / "case_t2.nii.gz"
    nib.save(
        nib.Nifti1Image(np.arange(16 * 16 * 8, dtype=np.int16).reshape(16, 16, 8), np.eye(4)), path
    )
    data, _ = read_nifti(path)
    assert data.shape == (16, 16, 8) and int(data[15, 15, 7]) == 16 * 16 * 8 - 1
