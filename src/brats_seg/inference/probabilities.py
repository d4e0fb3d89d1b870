"""Per-class probabilities saved beside a segmentation (``predict save_probabilities=true``), as
nnU-Net's ``--save_probabilities`` does.

``<case-id>_probabilities.nii.gz``: float32, 4D ``(X, Y, Z, K)`` on the segmentation's grid, with
the case's affine and header; channel k is the probability of class k in CLASS_NAMES order
(background, NCR, ED, ET), summing to 1 in every voxel. They are the ensemble's averaged softmax
(tempered when predict's ``calibrated=true``), before any post-processing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PROBABILITIES_SUFFIX = "_probabilities"
PROBABILITIES_EXT = ".nii.gz"


def probabilities_name(case_id: str) -> str:
    return f"{case_id}{PROBABILITIES_SUFFIX}{PROBABILITIES_EXT}"


def is_probabilities_file(name: str) -> bool:
    """Whether a file name is one of saved probabilities (not a segmentation to score)."""
    return name.endswith(PROBABILITIES_SUFFIX + PROBABILITIES_EXT)


def write_probabilities(probs_xyzk: np.ndarray, loaded, out_dir: Path) -> Path:
    """Write a case's (X, Y, Z, K) probabilities with its affine and header."""
    from brats_seg.data.nifti import write_nifti

    probs = np.asarray(probs_xyzk, dtype=np.float32)
    return write_nifti(
        Path(out_dir) / probabilities_name(loaded.case_id),
        probs,
        loaded.affine,
        header=loaded.header,
        description="brats-seg class probabilities: background, NCR, ED, ET",
    )
