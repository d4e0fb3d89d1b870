"""Which axial slices to train on.

* ``threshold``: keep a slice when any single tumour class (1, 2 or 3) covers more than
  ``threshold`` pixels (the study's rule, 3000 px on 240x240 slices);
* ``tumour``: keep every slice with at least one tumour pixel;
* ``brain``: keep every slice with at least one non-zero image pixel.
"""

from __future__ import annotations

import numpy as np

from brats_seg.data.labels import NUM_CLASSES
from brats_seg.data.settings import SelectionSettings


def class_pixel_counts(y: np.ndarray) -> np.ndarray:
    """(Z, 4) int64: pixels of each class on each slice of a (Z, H, W) class stack."""
    return np.stack(
        [np.count_nonzero(y == c, axis=(1, 2)) for c in range(NUM_CLASSES)], axis=1
    ).astype(np.int64)


def select_slices(
    y: np.ndarray, brain_pixels: np.ndarray, selection: SelectionSettings
) -> np.ndarray:
    """Indices (ascending, int64) of the slices of a (Z, H, W) class stack that ``selection`` keeps.

    ``brain_pixels`` (Z,) counts the non-zero image pixels of each slice (used by the ``brain``
    rule).
    """
    if selection.rule == "brain":
        keep = np.asarray(brain_pixels) > 0
    else:
        tumour = class_pixel_counts(y)[:, 1:]
        if selection.rule == "tumour":
            keep = tumour.sum(axis=1) > 0
        else:
            keep = (tumour > selection.threshold).any(axis=1)
    return np.flatnonzero(keep).astype(np.int64)
