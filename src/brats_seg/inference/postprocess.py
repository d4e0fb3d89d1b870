"""BraTS post-processing of a predicted volume (classes 0..3: background, NCR, ED, ET), as nnU-Net
did for BraTS, region by region.

From the softmax (where it is available: evaluate and predict), each region's mask may be taken by a
probability threshold instead of the argmax; a region's probability is the sum of the softmax of its
classes (WT: NCR + ED + ET, TC: NCR + ET, ET: ET):

- ``wt_threshold``, ``tc_threshold``, ``et_threshold``: the region is where its probability exceeds
  the threshold, within the region that holds it (TC within WT, ET within TC), so the regions stay
  nested; 0 (off) keeps the argmax's region. The classes are then rebuilt from the nested masks: ET,
  TC without ET = NCR, WT without TC = ED.

Then, on the class volume (components are 26-connected in 3D, as the lesion-wise metrics count
them):

- ``et_min_component``: ET components smaller than this many voxels become NCR (the voxels stay
  tumour core, only their enhancement is dropped);
- ``tc_min_component``: TC components smaller than this become ED (they stay whole tumour);
- ``min_component``: whole-tumour components smaller than this become background;
- ``min_component_share``: whole-tumour components smaller than this share of the largest one
  become background (0: off; 1: the largest component alone). A glioma is mostly one connected
  lesion, and a model trained on few patients scatters small false detections far from it;
- ``et_min_volume``: when the whole volume holds fewer ET voxels than this, they become NCR (0:
  off). A few false ET voxels on a patient without ET cost the whole ET Dice under the BraTS
  empty-region rule.

Each removal relabels a component to the next region out, so a region's mask changes only by its own
settings and those of the regions around it: every ET component lies inside one TC component and
every TC component inside one WT component, so a removed WT component takes its TC and ET with it
and the order of the steps does not matter. ``postprocess_tuning.py`` chooses these settings on a
run's validation patients.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from brats_seg.data.labels import EDEMA, REGIONS
from brats_seg.errors import ConfigError

NCR, ET = 1, 3
_CONNECTIVITY = ndimage.generate_binary_structure(3, 3)
MIN_SIZES = {"WT": "min_component", "TC": "tc_min_component", "ET": "et_min_component"}
THRESHOLDS = {"WT": "wt_threshold", "TC": "tc_threshold", "ET": "et_threshold"}
OPTIONS = (
    "min_component",
    "et_min_volume",
    "min_component_share",
    "tc_min_component",
    "et_min_component",
    *THRESHOLDS.values(),
)
# What a removed component of each region becomes: ET -> NCR, TC -> ED, WT -> background.
REMOVED_AS = {"WT": 0, "TC": EDEMA, "ET": NCR}


@dataclass(frozen=True)
class PostprocessSettings:
    min_component: int = 0
    et_min_volume: int = 0
    min_component_share: float = 0.0
    tc_min_component: int = 0
    et_min_component: int = 0
    wt_threshold: float = 0.0
    tc_threshold: float = 0.0
    et_threshold: float = 0.0

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
        values: dict[str, Any] = {
            key: int(cfg.get(key) or 0)
            for key in ("min_component", "et_min_volume", "tc_min_component", "et_min_component")
        }
        values["min_component_share"] = float(cfg.get("min_component_share") or 0.0)
        for key in THRESHOLDS.values():
            values[key] = float(cfg.get(key) or 0.0)
        return cls(**values)

    @property
    def thresholded(self) -> bool:
        return any(getattr(self, key) for key in THRESHOLDS.values())

    @property
    def enabled(self) -> bool:
        return bool(
            self.thresholded
            or self.min_component
            or self.tc_min_component
            or self.et_min_component
            or self.et_min_volume
            or self.min_component_share
        )

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def region_probability(probs: np.ndarray, region: str) -> np.ndarray:
    """The probability of a region: the sum of the softmax (..., 4) of its classes."""
    return probs[..., list(REGIONS[region])].sum(axis=-1)


def region_mask(
    probs: np.ndarray, classes: np.ndarray, region: str, threshold: float
) -> np.ndarray:
    """A region's mask: where its probability exceeds ``threshold``, or the argmax ``classes``'
    region when the threshold is 0 (not nested in the outer region yet)."""
    if threshold:
        return region_probability(probs, region) > threshold
    return np.isin(classes, REGIONS[region])


def classes_from_masks(wt: np.ndarray, tc: np.ndarray, et: np.ndarray) -> np.ndarray:
    """Classes of three region masks, nested first (TC within WT, ET within TC)."""
    tc, et = tc & wt, et & tc & wt
    out = np.zeros(wt.shape, dtype=np.uint8)
    out[wt] = EDEMA
    out[tc] = NCR
    out[et] = ET
    return out


def classes_from_probabilities(probs: np.ndarray, settings: PostprocessSettings) -> np.ndarray:
    """Classes of a (mean) softmax ``probs`` (..., 4): the argmax, or the nested region thresholds
    of ``settings`` where any is set."""
    classes = np.argmax(probs, axis=-1).astype(np.uint8)
    if not settings.thresholded:
        return classes
    masks = [
        region_mask(probs, classes, region, getattr(settings, THRESHOLDS[region]))
        for region in REGIONS
    ]
    return classes_from_masks(*masks)


def remove_small(
    classes: np.ndarray, region: str, min_size: float, out: np.ndarray | None = None
) -> np.ndarray:
    """``out`` (default: a copy of ``classes``) with ``region``'s components of ``classes`` smaller
    than ``min_size`` voxels relabelled as REMOVED_AS says."""
    out = np.array(classes, dtype=np.uint8, copy=True) if out is None else out
    if min_size <= 0:
        return out
    labels, count = ndimage.label(np.isin(classes, REGIONS[region]), structure=_CONNECTIVITY)
    if count:
        small = np.bincount(labels.ravel()) < min_size
        small[0] = False
        out[small[labels]] = REMOVED_AS[region]
    return out


def postprocess(classes: np.ndarray, settings: PostprocessSettings) -> np.ndarray:
    """A post-processed copy of a 3D class volume (or the volume itself when nothing is enabled).
    Region thresholds need the softmax: ``classes_from_probabilities`` applies them first."""
    if not settings.enabled:
        return classes
    out = np.array(classes, dtype=np.uint8, copy=True)
    remove_small(classes, "ET", settings.et_min_component, out)
    remove_small(classes, "TC", settings.tc_min_component, out)
    if settings.min_component or settings.min_component_share:
        labels, count = ndimage.label(classes > 0, structure=_CONNECTIVITY)
        if count:
            sizes = np.bincount(labels.ravel())
            floor = max(settings.min_component, settings.min_component_share * sizes[1:].max())
            small = sizes < floor
            small[0] = False
            out[small[labels]] = 0
    if settings.et_min_volume and 0 < np.count_nonzero(out == ET) < settings.et_min_volume:
        out[out == ET] = NCR
    return out
