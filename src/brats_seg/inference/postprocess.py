"""BraTS post-processing of a predicted class volume (classes 0..3, ET = 3), as nnU-Net did for
BraTS.

- ``min_component``: connected components of the whole tumour (26-connected in 3D) smaller than this
  many voxels become background (0: off);
- ``et_min_volume``: when the whole volume holds fewer ET voxels than this, they become NCR (0:
  off). A few false ET voxels on a patient without ET cost the whole ET Dice under the BraTS
  empty-region rule.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from brats_seg.errors import ConfigError

NCR, ET = 1, 3
_CONNECTIVITY = ndimage.generate_binary_structure(3, 3)


@dataclass(frozen=True)
class PostprocessSettings:
    min_component: int = 0
    et_min_volume: int = 0

    @classmethod
    def from_cfg(cls, cfg: Any, where: str = "postprocess") -> PostprocessSettings:
        if isinstance(cfg, PostprocessSettings):
            return cfg
        from brats_seg.data.settings import to_plain

        cfg = to_plain(cfg) or {}
        if not isinstance(cfg, dict):
            raise ConfigError(
                f"{where} must be a mapping with min_component and et_min_volume, got {cfg!r}"
            )
        unknown = sorted(set(cfg) - {"min_component", "et_min_volume"})
        if unknown:
            raise ConfigError(
                f"{where}.{unknown[0]}: unknown option (valid: min_component, et_min_volume)"
            )
        values = {}
        for key in ("min_component", "et_min_volume"):
            value = cfg.get(key) or 0
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(
                    f"{where}.{key} must be a whole number of voxels >= 0, got {value!r}"
                )
            values[key] = value
        return cls(**values)

    @property
    def enabled(self) -> bool:
        return bool(self.min_component or self.et_min_volume)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def postprocess(classes: np.ndarray, settings: PostprocessSettings) -> np.ndarray:
    """A post-processed copy of a 3D class volume (or the volume itself when nothing is enabled)."""
    if not settings.enabled:
        return classes
    out = np.array(classes, dtype=np.uint8, copy=True)
    if settings.min_component:
        labels, count = ndimage.label(out > 0, structure=_CONNECTIVITY)
        if count:
            sizes = np.bincount(labels.ravel())
            small = sizes < settings.min_component
            small[0] = False
            out[small[labels]] = 0
    if settings.et_min_volume and 0 < np.count_nonzero(out == ET) < settings.et_min_volume:
        out[out == ET] = NCR
    return out
