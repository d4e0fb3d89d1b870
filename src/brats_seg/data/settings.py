"""Validated preprocessing and slice-selection settings, built from the ``data`` config node.

Every invalid value raises a ConfigError naming the option (``data.preprocess.crop.size`` ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from brats_seg.config_schema import (
    CROP_MULTIPLE,
    MAX_CONTEXT,
    FifthChannel,
    Normalization,
    SelectionRule,
    choices,
    to_plain,
)
from brats_seg.data.planes import check_plane
from brats_seg.errors import ConfigError

# The choices are declared once, in the config schema.
NORMALIZATIONS = choices(Normalization)
FIFTH_CHANNELS = choices(FifthChannel)
SELECTION_RULES = choices(SelectionRule)


@dataclass(frozen=True)
class PreprocessSettings:
    """``data.preprocess``: normalisation, optional fifth channel, optional crop (None: no crop)."""

    normalization: str = "zscore"
    percentiles: tuple[float, float] = (0.5, 99.5)
    fifth_channel: str | None = None
    fifth_channel_sigma: float = 1.0
    crop_size: tuple[int, int] | None = None
    # 2.5D input: the k slices below and above each slice add their channels (0: plain 2D slices).
    context_slices: int = 0
    # ``data.plane``: the plane the slices are cut in (see planes.py).
    plane: str = "axial"

    @property
    def base_channels(self) -> int:
        """Channels of one slice: four modalities and the optional fifth."""
        return 4 + (self.fifth_channel is not None)

    @property
    def channels(self) -> int:
        return self.base_channels * (1 + 2 * self.context_slices)

    @classmethod
    def from_data_cfg(cls, data_cfg: Any) -> PreprocessSettings:
        """From the whole ``data`` node: ``data.preprocess`` and ``data.plane`` (axial when a run
        of an older version has none)."""
        data_cfg = to_plain(data_cfg) or {}
        return cls.from_cfg(data_cfg.get("preprocess"), plane=data_cfg.get("plane"))

    @classmethod
    def from_cfg(
        cls, cfg: Mapping[str, Any] | PreprocessSettings | None, plane: Any = None
    ) -> PreprocessSettings:
        """From ``data.preprocess`` (and ``plane``, ``data.plane``; None: axial)."""
        if isinstance(cfg, PreprocessSettings):
            return cfg
        plane = check_plane(plane)
        cfg = to_plain(cfg) or {}
        normalization = cfg.get("normalization", "zscore")
        if normalization not in NORMALIZATIONS:
            raise ConfigError(
                f"data.preprocess.normalization must be one of {', '.join(NORMALIZATIONS)}, "
                f"got {normalization!r}"
            )
        percentiles = _percentiles(cfg.get("percentiles", (0.5, 99.5)))
        fifth = cfg.get("fifth_channel")
        if fifth is not None and fifth not in FIFTH_CHANNELS:
            raise ConfigError(
                "data.preprocess.fifth_channel must be null or one of "
                f"{', '.join(FIFTH_CHANNELS)}, "
                f"got {fifth!r}"
            )
        sigma = cfg.get("fifth_channel_sigma", 1.0)
        if not isinstance(sigma, (int, float)) or isinstance(sigma, bool) or not sigma > 0:
            raise ConfigError(
                f"data.preprocess.fifth_channel_sigma must be a positive number, got {sigma!r}"
            )
        crop = cfg.get("crop") or {}
        crop_size = _crop_size(crop.get("size")) if crop.get("enabled", False) else None
        context = cfg.get("context_slices", 0)
        if (
            not isinstance(context, int)
            or isinstance(context, bool)
            or not 0 <= context <= MAX_CONTEXT
        ):
            raise ConfigError(
                f"data.preprocess.context_slices must be a whole number from 0 to {MAX_CONTEXT}, "
                f"got {context!r}"
            )
        return cls(normalization, percentiles, fifth, float(sigma), crop_size, context, plane)

    def as_dict(self) -> dict[str, Any]:
        """The settings that change the output (used in the cache key and recorded in the cache
        index)."""
        out: dict[str, Any] = {"normalization": self.normalization}
        if self.normalization == "percentile":
            out["percentiles"] = list(self.percentiles)
        out["fifth_channel"] = self.fifth_channel
        if self.fifth_channel is not None:
            out["fifth_channel_sigma"] = self.fifth_channel_sigma
        out["crop_size"] = list(self.crop_size) if self.crop_size else None
        if self.context_slices:  # only when set, so the caches of plain 2D settings keep their keys
            out["context_slices"] = self.context_slices
        if self.plane != "axial":  # likewise: axial caches keep their keys
            out["plane"] = self.plane
        return out


@dataclass(frozen=True)
class SelectionSettings:
    """``data.selection``: which axial slices go into the training cache."""

    rule: str = "threshold"
    threshold: int = 3000

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any] | SelectionSettings | None) -> SelectionSettings:
        if isinstance(cfg, SelectionSettings):
            return cfg
        cfg = to_plain(cfg) or {}
        rule = cfg.get("rule", "threshold")
        if rule not in SELECTION_RULES:
            raise ConfigError(
                f"data.selection.rule must be one of {', '.join(SELECTION_RULES)}, got {rule!r}"
            )
        threshold = cfg.get("threshold", 3000)
        if rule == "threshold" and (
            not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 0
        ):
            raise ConfigError(
                f"data.selection.threshold must be a whole number of pixels >= 0, got {threshold!r}"
            )
        return cls(rule, int(threshold) if rule == "threshold" else 0)

    def as_dict(self) -> dict[str, Any]:
        return (
            {"rule": self.rule, "threshold": self.threshold}
            if self.rule == "threshold"
            else {"rule": self.rule}
        )

    def describe(self) -> str:
        if self.rule == "threshold":
            return f"data.selection.rule=threshold data.selection.threshold={self.threshold}"
        return f"data.selection.rule={self.rule}"


def _percentiles(value: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"data.preprocess.percentiles must be two numbers [low, high], got {value!r}"
        ) from None
    if not 0.0 <= lo < hi <= 100.0:
        raise ConfigError(
            f"data.preprocess.percentiles must satisfy 0 <= low < high <= 100, got {[lo, hi]}"
        )
    return lo, hi


def _crop_size(value: Any) -> tuple[int, int]:
    ok = (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 and v % CROP_MULTIPLE == 0
            for v in value
        )
    )
    if not ok:
        raise ConfigError(
            f"data.preprocess.crop.size must be two positive multiples of {CROP_MULTIPLE} [H, W] "
            f"(the models halve the image 4 times), got {value!r}"
        )
    return int(value[0]), int(value[1])
