"""The plane 2D slices are cut in (``data.plane``): a volume as a stack of slices and back.

A volume is (X, Y, Z, ...) as loaded: X left-right, Y anterior-posterior, Z inferior-superior. A
plane's slice stack puts the axis it cuts across first, the other two keep their order:

    axial     (Z, X, Y, ...)  rows left-right,            columns anterior-posterior (the study's)
    sagittal  (X, Y, Z, ...)  rows anterior-posterior,    columns inferior-superior
    coronal   (Y, X, Z, ...)  rows left-right,            columns inferior-superior

Rows stay the left-right axis wherever the plane has one, so the row flip of training augmentation
and of TTA stays a left-right mirror there; a sagittal slice has no left-right axis, and the same
flip mirrors it front to back (in training and TTA alike). Everything else that works on slices
(crop, brain box, patches, 2.5D context, selection) is the same code whatever the plane; the crop
box stays a box of the axial plane over every Z (see crop.py), so it cuts the same voxels in every
plane.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from brats_seg.config_schema import Plane, choices
from brats_seg.errors import ConfigError

PLANES = choices(Plane)  # declared in the config schema
AXIAL = "axial"
# The volume axis each plane cuts across.
SLICE_AXIS = {"axial": 2, "sagittal": 0, "coronal": 1}


def check_plane(value: Any, option: str = "data.plane") -> str:
    """``value`` as a plane name, or a ConfigError naming ``option``."""
    if value is None:
        return AXIAL
    if str(value) not in PLANES:
        raise ConfigError(f"{option} must be one of {', '.join(PLANES)}, got {value!r}")
    return str(value)


def volume_to_slices(vol: np.ndarray, plane: str = AXIAL) -> np.ndarray:
    """(X, Y, Z, ...) -> the plane's slice stack (S, rows, columns, ...) (a view)."""
    return np.moveaxis(vol, SLICE_AXIS[plane], 0)


def slices_to_volume(slices: np.ndarray, plane: str = AXIAL) -> np.ndarray:
    """The plane's slice stack (S, rows, columns, ...) -> (X, Y, Z, ...) (a view); the inverse of
    volume_to_slices."""
    return np.moveaxis(slices, 0, SLICE_AXIS[plane])


def in_plane_axes(plane: str = AXIAL) -> tuple[int, int]:
    """The volume axes of a slice's rows and columns."""
    rows, cols = (axis for axis in range(3) if axis != SLICE_AXIS[plane])
    return rows, cols


def slice_size(volume_shape: tuple[int, ...], plane: str = AXIAL) -> tuple[int, int]:
    """(rows, columns) of the plane's slices of a volume of shape (X, Y, Z, ...)."""
    rows, cols = in_plane_axes(plane)
    return int(volume_shape[rows]), int(volume_shape[cols])
