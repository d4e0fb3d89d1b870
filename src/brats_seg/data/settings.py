"""Preprocessing and slice-selection settings, built from the ``data`` config node.

The values come checked from composition (the schema's domains, brats_seg.config.check_options)
and their defaults from configs/data/brats.yaml; nothing here restates either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from brats_seg.config_schema import FifthChannel, Normalization, SelectionRule, choices, to_plain
from brats_seg.data.planes import check_plane

# The choices are declared once, in the config schema.
NORMALIZATIONS = choices(Normalization)
FIFTH_CHANNELS = choices(FifthChannel)
SELECTION_RULES = choices(SelectionRule)


@dataclass(frozen=True)
class PreprocessSettings:
    """``data.preprocess``: normalisation, optional fifth channel, optional crop (None: no crop)."""

    normalization: str
    percentiles: tuple[float, float]
    fifth_channel: str | None
    fifth_channel_sigma: float
    crop_size: tuple[int, int] | None
    # 2.5D input: the k slices below and above each slice add their channels (0: plain 2D slices).
    context_slices: int
    # ``data.plane``: the plane the slices are cut in (see planes.py).
    plane: str

    @property
    def base_channels(self) -> int:
        """Channels of one slice: four modalities and the optional fifth."""
        return 4 + (self.fifth_channel is not None)

    @property
    def channels(self) -> int:
        return self.base_channels * (1 + 2 * self.context_slices)

    @classmethod
    def from_data_cfg(cls, data_cfg: Any) -> PreprocessSettings:
        """From the whole ``data`` node: ``data.preprocess`` and ``data.plane``."""
        data_cfg = to_plain(data_cfg)
        return cls.from_cfg(data_cfg["preprocess"], plane=data_cfg["plane"])

    @classmethod
    def from_cfg(cls, cfg: Any, plane: Any) -> PreprocessSettings:
        """From ``data.preprocess`` and ``data.plane`` of a composed config (their schema has
        checked every value, brats_seg.config.check_options)."""
        if isinstance(cfg, PreprocessSettings):
            return cfg
        cfg = to_plain(cfg)
        crop = cfg["crop"]
        return cls(
            normalization=str(cfg["normalization"]),
            percentiles=(float(cfg["percentiles"][0]), float(cfg["percentiles"][1])),
            fifth_channel=cfg["fifth_channel"],
            fifth_channel_sigma=float(cfg["fifth_channel_sigma"]),
            crop_size=(int(crop["size"][0]), int(crop["size"][1])) if crop["enabled"] else None,
            context_slices=int(cfg["context_slices"]),
            plane=check_plane(plane),
        )

    @classmethod
    def from_record(cls, stored: dict[str, Any]) -> PreprocessSettings:
        """From ``as_dict()``, as a cache index records it: a key it leaves out is one the output
        does not depend on (or at its plain-2D, axial value)."""
        defaults = cls.default()
        crop = stored["crop_size"]
        return cls(
            normalization=stored["normalization"],
            percentiles=tuple(stored.get("percentiles", defaults.percentiles)),
            fifth_channel=stored["fifth_channel"],
            fifth_channel_sigma=stored.get("fifth_channel_sigma", defaults.fifth_channel_sigma),
            crop_size=(int(crop[0]), int(crop[1])) if crop else None,
            context_slices=stored.get("context_slices", 0),
            plane=stored.get("plane", "axial"),
        )

    @classmethod
    def default(cls) -> PreprocessSettings:
        """The settings configs/data/brats.yaml sets (the default data node)."""
        from brats_seg.config import group_defaults

        return cls.from_data_cfg(group_defaults("data", "brats"))

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

    rule: str
    threshold: int

    @classmethod
    def from_cfg(cls, cfg: Any) -> SelectionSettings:
        """From ``data.selection`` of a composed config (or a cache's record of one)."""
        if isinstance(cfg, SelectionSettings):
            return cfg
        cfg = to_plain(cfg)
        rule = str(cfg["rule"])
        return cls(rule, int(cfg["threshold"]) if rule == "threshold" else 0)

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
