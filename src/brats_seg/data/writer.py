"""Write a case folder in BraTS naming (images and optional segmentation as NIfTI), from arrays."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from brats_seg.data.discovery import MODALITIES, CaseFiles, file_name
from brats_seg.data.labels import to_convention
from brats_seg.data.nifti import DEFAULT_AFFINE, write_nifti


def write_case(
    folder: str | os.PathLike,
    case_id: str,
    image: np.ndarray,
    classes: np.ndarray | None = None,
    *,
    convention: str = "brats2021",
    affine: np.ndarray = DEFAULT_AFFINE,
    image_dtype=np.int16,
    seg_dtype=np.uint8,
    ext: str = ".nii.gz",
) -> CaseFiles:
    """Write ``image`` (X, Y, Z, 4) in channel order t1, t1ce, t2, flair, and ``classes`` (0..3)
    mapped to the labels of ``convention``; returns the written files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images = {}
    for c, modality in enumerate(MODALITIES):
        images[modality] = write_nifti(
            folder / file_name(case_id, modality, convention, ext),
            np.asarray(image[..., c]).astype(image_dtype),
            affine,
        )
    seg = None
    if classes is not None:
        labels = to_convention(np.asarray(classes, dtype=np.uint8), convention).astype(seg_dtype)
        seg = write_nifti(folder / file_name(case_id, "seg", convention, ext), labels, affine)
    return CaseFiles(case_id, folder, images, seg, convention)
