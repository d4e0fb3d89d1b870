"""NIfTI in and out: read one BraTS case with validation (every problem a one-line DataError naming
the file), and the one NIfTI writer (atomic) that images, synthetic cases and predictions all go
through."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from brats_seg.atomic import atomic_path
from brats_seg.data.discovery import MODALITIES, CaseFiles
from brats_seg.data.labels import LabelRules, decode_labels, resolve_convention
from brats_seg.errors import DataError, first_line

# Affines of the files of one case must agree to this tolerance (mm); qform-derived affines differ
# by ~1e-6.
AFFINE_ATOL = 1e-3

# BraTS' 1 mm LPS grid, the affine written when none is given.
DEFAULT_AFFINE = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239.0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])

_decodes = 0


def decode_count() -> int:
    """How many NIfTI arrays this process has decoded so far (tests use it to prove a cache was
    reused)."""
    return _decodes


def record_decodes(count: int) -> None:
    """Add decodes done on this process's behalf by worker processes."""
    global _decodes
    _decodes += count


@dataclass
class LoadedCase:
    """One decoded, validated case: images stacked in channel order t1, t1ce, t2, flair."""

    case: CaseFiles
    image: np.ndarray  # (X, Y, Z, 4) float32, as stored (not normalised)
    seg: np.ndarray | None  # (X, Y, Z) uint8 classes 0..3
    label_convention: str  # the labels its seg holds, and a prediction is written in (labels.py)
    affine: np.ndarray  # (4, 4) of the t1 image
    header: nib.Nifti1Header  # of the t1 image, for writing predictions
    spacing: tuple[float, float, float]

    @property
    def case_id(self) -> str:
        return self.case.case_id

    @property
    def convention(self) -> str:
        """The case's file naming (brats2021 | brats2023); its labels: ``label_convention``."""
        return self.case.convention


def read_nifti(path: Path) -> tuple[np.ndarray, nib.Nifti1Image]:
    """Decode one NIfTI file into an array (its stored dtype, scaling applied) and its image object.

    nibabel reads lazily: a truncated or corrupt ``.nii.gz`` may only fail when the voxels are read,
    so both the header load and the data access are guarded.
    """
    global _decodes
    try:
        img = nib.load(str(path))
        damage = header_damage(Path(path), img)
        if damage:
            raise DataError(f"{path}: {damage}")
        data = np.asanyarray(img.dataobj)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (
        Exception
    ) as err:  # zlib.error, EOFError, OSError, ValueError, ImageFileError, ...: all mean a bad file
        raise DataError(
            f"{path}: corrupt or truncated NIfTI ({type(err).__name__}: {first_line(err)})"
        ) from None
    _decodes += 1
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"{path}: expected a 3D volume, found shape {tuple(data.shape)}")
    return data, img


# Deflate (gzip) cannot compress by more than about 1032:1.
_MAX_GZIP_RATIO = 1032


def header_damage(path: Path, img) -> str | None:
    """What is impossible about a NIfTI header's claimed size given the file on disk, or None
    (checked before the voxels are read, which would otherwise fail as a MemoryError or a short
    read)."""
    shape = tuple(int(d) for d in img.header.get_data_shape())
    dtype = img.header.get_data_dtype()
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    size = path.stat().st_size
    claim = f"its header claims {'x'.join(map(str, shape))} voxels of {dtype} ({need} bytes)"
    if path.name.endswith(".gz"):
        if need > size * _MAX_GZIP_RATIO:
            return f"{claim}, more than a {size}-byte gzip file can hold"
        return None
    held = size - int(getattr(img.dataobj, "offset", 0))  # nibabel keeps it on the proxy
    if need > held:
        return f"{claim}, but the file holds {held} bytes of voxels (truncated or a bad header)"
    return None


def load_case(case: CaseFiles, labels: LabelRules | None = None) -> LoadedCase:
    """Decode and check a case: four images of equal shape and affine, finite voxels, none of them
    empty or constant, a valid segmentation (read by ``labels``: see data/labels.py)."""
    labels = labels or LabelRules.default()
    first_path = case.images[MODALITIES[0]]
    channels = []
    first_img = None
    for modality in MODALITIES:
        path = case.images[modality]
        data, img = read_nifti(path)
        if data.dtype.kind == "f":
            bad = np.count_nonzero(~np.isfinite(data))
            if bad:
                raise DataError(f"{path}: {bad} non-finite voxel(s) (NaN or inf)")
        elif data.dtype.kind not in "iub":
            raise DataError(f"{path}: image has non-numeric dtype {data.dtype}")
        check_not_blank(path, data)
        if first_img is None:
            first_img = img
        else:
            check_geometry(
                path, data.shape, img.affine, first_path, channels[0].shape, first_img.affine
            )
        channels.append(data)
    image = _stack_channels(channels)
    seg = None
    convention = resolve_convention(case.convention, (), labels, ())  # a case with no seg
    if case.seg is not None:
        raw, seg_img = read_nifti(case.seg)
        check_geometry(
            case.seg, raw.shape, seg_img.affine, first_path, image.shape[:3], first_img.affine
        )
        seg, convention = decode_labels(raw, case.convention, str(case.seg), labels)
    zooms = first_img.header.get_zooms()[:3]
    return LoadedCase(
        case=case,
        image=image,
        seg=seg,
        label_convention=convention,
        affine=np.asarray(first_img.affine, dtype=np.float64),
        header=first_img.header.copy(),
        spacing=tuple(float(z) for z in zooms),
    )


def check_not_blank(path: Path, data: np.ndarray) -> None:
    """Refuse an image with no non-zero voxel, or one value everywhere: nothing to learn from or
    normalise."""
    if data.size == 0:
        raise DataError(f"{path}: image has no voxels")
    low, high = data.min(), data.max()
    if low == high:
        what = (
            "no non-zero voxel (an empty scan)"
            if low == 0
            else f"the same value {_number(low)} in every voxel"
        )
        raise DataError(f"{path}: image has {what}; a modality must show the brain")


def _number(value) -> str:
    return str(int(value)) if float(value).is_integer() else f"{float(value):g}"


def _stack_channels(channels: list[np.ndarray]) -> np.ndarray:
    """(X, Y, Z, 4) float32 in Fortran order: nibabel decodes Fortran-ordered arrays, so the copy is
    linear and every channel ``image[..., c]`` stays contiguous for the per-channel
    preprocessing."""
    image = np.empty(channels[0].shape + (len(channels),), dtype=np.float32, order="F")
    for c, data in enumerate(channels):
        image[..., c] = data
    return image


def check_geometry(
    path: Path,
    shape: tuple,
    affine: np.ndarray,
    ref_path: Path,
    ref_shape: tuple,
    ref_affine: np.ndarray,
) -> None:
    """Refuse a file whose voxel grid (shape and affine) is not that of ``ref_path``."""
    if tuple(shape) != tuple(ref_shape):
        raise DataError(
            f"{path}: shape {tuple(shape)} differs from {Path(ref_path).name} {tuple(ref_shape)}"
        )
    if not np.allclose(affine, ref_affine, rtol=0.0, atol=AFFINE_ATOL):
        raise DataError(
            f"{path}: affine differs from {Path(ref_path).name} "
            "(files compared voxel by voxel must share one grid)"
            f": {np.round(affine, 3).tolist()} vs {np.round(ref_affine, 3).tolist()}"
        )


def nifti_image(
    data: np.ndarray,
    affine: np.ndarray = DEFAULT_AFFINE,
    header: nib.Nifti1Header | None = None,
    description: str | None = None,
) -> nib.Nifti1Image:
    """``data`` in its own dtype as a NIfTI image (see write_nifti for the header it gets)."""
    data = np.asarray(data)
    affine = np.asarray(affine, dtype=np.float64)
    header = header.copy() if header is not None else None
    image = nib.Nifti1Image(data, affine, header)
    image.header.set_data_dtype(data.dtype)
    qform_code = int(header["qform_code"]) if header is not None else 0
    sform_code = int(header["sform_code"]) if header is not None else 0
    image.set_qform(affine, code=qform_code or 1)
    image.set_sform(affine, code=sform_code or 1)
    image.header["scl_slope"], image.header["scl_inter"] = 1.0, 0.0
    if header is None:
        image.header.set_xyzt_units("mm")
    if description is not None:
        image.header["descrip"] = description.encode("ascii")[:80]
    return image


def write_nifti(
    path: str | os.PathLike,
    data: np.ndarray,
    affine: np.ndarray = DEFAULT_AFFINE,
    header: nib.Nifti1Header | None = None,
    description: str | None = None,
) -> Path:
    """Save ``data`` in its own dtype as NIfTI (``.nii`` or ``.nii.gz`` by the name), atomically.

    With ``header`` (a source image's), its fields are kept and only the data type changes; the
    qform and sform are set to ``affine`` with the source's codes (1, scanner, when it has none).
    Without it, a fresh header in mm.
    """
    path = Path(path)
    image = nifti_image(data, affine, header, description)
    suffix = ".nii.gz" if path.name.endswith(".gz") else ".nii"
    with atomic_path(path) as tmp:
        # nibabel picks compression from the file name, so give the temporary file the right ending
        named = tmp.with_name(tmp.name + suffix)
        try:
            nib.save(image, str(named))
            os.replace(named, tmp)
        finally:
            if named.exists():
                named.unlink()
    return path
