"""BraTS post-processing of a predicted class volume (classes 0..3, ET = 3), as nnU-Net did for
BraTS.

- ``min_component``: connected components of the whole tumour (26-connected in 3D) smaller than this
  many voxels become background (0: off);
- ``min_component_share``: components smaller than this share of the largest one become background
  (0: off; 1: the largest component alone). A glioma is mostly one connected lesion, and a model
  trained on few patients scatters small false detections far from it;
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
OPTIONS = ("min_component", "et_min_volume", "min_component_share")


@dataclass(frozen=True)
class PostprocessSettings:
    min_component: int = 0
    et_min_volume: int = 0
    min_component_share: float = 0.0

    @classmethod
    def from_cfg(cls, cfg: Any, where: str = "postprocess") -> PostprocessSettings:
        if isinstance(cfg, PostprocessSettings):
            return cfg
        from brats_seg.config_schema import to_plain

        cfg = to_plain(cfg) or {}
        if not isinstance(cfg, dict):
            raise ConfigError(f"{where} must be a mapping of {', '.join(OPTIONS)}, got {cfg!r}")
        unknown = sorted(set(cfg) - set(OPTIONS))
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: unknown option (valid: {', '.join(OPTIONS)})")
        # The values were checked with the config (config_schema.PostprocessSchema); null: off.
        return cls(
            min_component=int(cfg.get("min_component") or 0),
            et_min_volume=int(cfg.get("et_min_volume") or 0),
            min_component_share=float(cfg.get("min_component_share") or 0.0),
        )

    @property
    def enabled(self) -> bool:
        return bool(self.min_component or self.et_min_volume or self.min_component_share)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def postprocess(classes: np.ndarray, settings: PostprocessSettings) -> np.ndarray:
    """A post-processed copy of a 3D class volume (or the volume itself when nothing is enabled)."""
    if not settings.enabled:
        return classes
    out = np.array(classes, dtype=np.uint8, copy=True)
    if settings.min_component or settings.min_component_share:
        labels, count = ndimage.label(out > 0, structure=_CONNECTIVITY)
        if count:
            sizes = np.bincount(labels.ravel())
            floor = max(settings.min_component, settings.min_component_share * sizes[1:].max())
            small = sizes < floor
            small[0] = False
            out[small[labels]] = 0
    if settings.et_min_volume and 0 < np.count_nonzero(out == ET) < settings.et_min_volume:
        out[out == ET] = NCR
    return out
