"""Write a case folder in BraTS naming (images and optional segmentation as NIfTI)."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from brats_seg.atomic import atomic_path
from brats_seg.data.discovery import MODALITIES, CaseFiles, file_name
from brats_seg.data.labels import to_convention

DEFAULT_AFFINE = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239.0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])


def write_nifti(path: str | os.PathLike, data: np.ndarray, affine: np.ndarray = DEFAULT_AFFINE,
                header: nib.Nifti1Header | None = None) -> Path:
    """Save ``data`` as NIfTI (``.nii`` or ``.nii.gz`` by the name) atomically, in ``data``'s dtype."""
    path = Path(path)
    img = nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=np.float64), header=header)
    img.set_data_dtype(np.asarray(data).dtype)
    suffix = ".nii.gz" if path.name.endswith(".gz") else ".nii"
    with atomic_path(path) as tmp:
        # nibabel picks compression from the file name, so give the temporary file the right ending
        named = tmp.with_name(tmp.name + suffix)
        try:
            nib.save(img, str(named))
            os.replace(named, tmp)
        finally:
            if named.exists():
                named.unlink()
    return path


def write_case(folder: str | os.PathLike, case_id: str, image: np.ndarray, classes: np.ndarray | None = None, *,
               convention: str = "brats2021", affine: np.ndarray = DEFAULT_AFFINE, image_dtype=np.int16,
               seg_dtype=np.uint8, ext: str = ".nii.gz") -> CaseFiles:
    """Write ``image`` (X, Y, Z, 4) in channel order t1, t1ce, t2, flair, and ``classes`` (0..3) mapped to the
    labels of ``convention``; returns the written files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images = {}
    for c, modality in enumerate(MODALITIES):
        images[modality] = write_nifti(folder / file_name(case_id, modality, convention, ext),
                                       np.asarray(image[..., c]).astype(image_dtype), affine)
    seg = None
    if classes is not None:
        labels = to_convention(np.asarray(classes, dtype=np.uint8), convention).astype(seg_dtype)
        seg = write_nifti(folder / file_name(case_id, "seg", convention, ext), labels, affine)
    return CaseFiles(case_id, folder, images, seg, convention)


def blob_case(shape: tuple[int, int, int] = (32, 32, 16), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A small BraTS-like case for tests and benchmarks: an ellipsoidal brain with noisy intensities (int-valued,
    zero outside) and a spherical tumour (edema around a necrotic core with an enhancing rim).

    Returns ``image`` (X, Y, Z, 4) float32 and ``classes`` (X, Y, Z) uint8.
    """
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"), axis=-1)
    centre = np.array(shape, dtype=np.float32) / 2 - 0.5
    brain = (((grid - centre) / (np.array(shape) * 0.42)) ** 2).sum(-1) <= 1.0
    image = np.zeros(shape + (4,), dtype=np.float32)
    for c in range(4):
        noise = rng.normal(100.0 * (c + 1), 15.0, size=shape)
        image[..., c] = np.where(brain, np.maximum(np.rint(noise), 1.0), 0.0)
    tumour_centre = centre + rng.uniform(-0.12, 0.12, size=3) * np.array(shape)
    radius = 0.22 * min(shape[:2])
    dist = np.sqrt(((grid - tumour_centre) ** 2).sum(-1))
    classes = np.zeros(shape, dtype=np.uint8)
    classes[(dist <= radius) & brain] = 2
    classes[dist <= 0.65 * radius] = 3
    classes[dist <= 0.4 * radius] = 1
    image[..., 3] += np.where(classes > 0, 80.0, 0.0)  # tumour is bright on FLAIR
    return image, classes
