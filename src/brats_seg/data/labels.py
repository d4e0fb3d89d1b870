"""BraTS label values <-> the four classes the models predict.

Classes: 0 background, 1 NCR/NET (necrotic / non-enhancing core), 2 edema, 3 ET (enhancing tumour).

Label conventions (``data.labels.convention``): BraTS 2017-2021 store ET as label 4 (``2017``);
BraTS 2023 as label 3 (``2023``); BraTS 2024 post-treatment glioma data keeps the 2023 labels and
adds label 4, the resection cavity (RC), which is not a tumour class (``2024``):
``resection_cavity="background"`` maps it to class 0, ``"error"`` refuses it. ``auto`` reads a
case by its file names (discovery.py): 2017-2021 names mean ``2017``; 2023 names mean ``2023``, or
``2024`` when the case holds label 4 beside label 3 (2017 labels have no 3). Label 4 without label 3
under 2023 names reads two ways (ET of 2017 labels, or a 2024 cavity with no ET) and is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from brats_seg.config_schema import LabelConvention, ResectionCavity, choices, to_plain
from brats_seg.errors import ConfigError, DataError

NUM_CLASSES = 4
CLASS_NAMES: tuple[str, ...] = ("background", "NCR/NET", "edema", "ET")
EDEMA = CLASS_NAMES.index("edema")

# The BraTS evaluation regions, as sets of classes: whole tumour, tumour core, enhancing tumour.
REGIONS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}

LABEL_CONVENTIONS: tuple[str, ...] = choices(LabelConvention)  # declared in the config schema
AUTO = "auto"

# label value on disk -> class, per label convention (2024: see RESECTION_CAVITY_LABEL)
LABEL_TO_CLASS: dict[str, dict[int, int]] = {
    "2017": {0: 0, 1: 1, 2: 2, 4: 3},
    "2023": {0: 0, 1: 1, 2: 2, 3: 3},
    "2024": {0: 0, 1: 1, 2: 2, 3: 3},
}
# file naming (discovery.CONVENTIONS) -> the label convention those names imply
NAMING_LABELS: dict[str, str] = {"brats2021": "2017", "brats2023": "2023"}
ET_2023 = 3
RESECTION_CAVITY_LABEL = 4  # BraTS 2024 post-treatment resection cavity
RESECTION_CAVITY_RULES: tuple[str, ...] = choices(ResectionCavity)  # declared in the config schema

# A float seg may hold whole labels with rounding error; anything further off (1.5: a linearly
# resampled seg) is not a label.
WHOLE_TOLERANCE = 1e-3

_READINGS = {
    "2017": "BraTS 2017-2021 labels (ET is 4)",
    "2023": "BraTS 2023 labels (ET is 3)",
    "2024": "BraTS 2024 post-treatment labels (ET is 3, label 4 the resection cavity)",
}


@dataclass(frozen=True)
class LabelRules:
    """``data.labels``: which label convention segs hold and what a resection cavity becomes.

    Read from a composed config, whose schema has checked both; ``default()`` is
    configs/data/brats.yaml's.
    """

    convention: str
    resection_cavity: str
    option: str = field(default="data.labels", compare=False)  # where they are set, for messages

    @classmethod
    def from_cfg(cls, cfg: Any, where: str = "data.labels") -> LabelRules:
        """From a ``labels`` node of a composed config (or a cache's record of one)."""
        cfg = to_plain(cfg)
        # LabelConvention takes a year Hydra parsed as an integer (2017) as its member '2017'.
        convention = LabelConvention(cfg["convention"]).value
        return cls(convention, check_resection_cavity(cfg["resection_cavity"], where), where)

    @classmethod
    def default(cls) -> LabelRules:
        """The rules configs/data/brats.yaml sets, for a caller that gives none."""
        from brats_seg.config import group_defaults

        return cls.from_cfg(group_defaults("data", "brats")["labels"])

    def as_dict(self) -> dict[str, str]:
        return {"convention": self.convention, "resection_cavity": self.resection_cavity}


def check_resection_cavity(rule: object, where: str = "data.labels") -> str:
    if rule not in RESECTION_CAVITY_RULES:
        raise ConfigError(
            f"{where}.resection_cavity must be one of "
            f"{', '.join(RESECTION_CAVITY_RULES)}, got {rule!r}"
        )
    return str(rule)


def whole_labels(labels: np.ndarray, source: str) -> np.ndarray:
    """The label map as integers; a float map must hold whole numbers (within rounding error)."""
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all():
            raise DataError(f"{source}: segmentation holds non-finite values (NaN or inf)")
        whole = np.rint(labels)
        off = np.abs(labels - whole) > WHOLE_TOLERANCE
        if off.any():
            values = np.unique(labels[off])
            shown = ", ".join(f"{v:g}" for v in values[:5].tolist())
            more = f" and {len(values) - 5} more" if len(values) > 5 else ""
            raise DataError(
                f"{source}: segmentation holds {int(off.sum())} voxel(s) that are not whole labels "
                f"({shown}{more}); a seg resampled with linear interpolation mixes labels: "
                "resample it with nearest-neighbour"
            )
        return whole.astype(np.int64)
    if labels.dtype.kind not in "iub":
        raise DataError(f"{source}: segmentation has non-numeric dtype {labels.dtype}")
    return labels


def label_values(labels: np.ndarray) -> set[int]:
    """The label values present in an integer label map."""
    return {int(v) for v in np.unique(labels).tolist()}


def resolve_convention(
    naming: str, values: Iterable[int], rules: LabelRules, sources: Iterable[str]
) -> str:
    """The label convention (2017, 2023 or 2024) of one case's labels: ``rules.convention``, or
    under auto the one the case's ``naming`` implies; ``values``: every label value of the case's
    files (``sources``, named in errors)."""
    if rules.convention != AUTO:
        return rules.convention
    implied = NAMING_LABELS[naming]
    values = set(values)
    if implied != "2023" or RESECTION_CAVITY_LABEL not in values:
        return implied
    if ET_2023 in values:
        return "2024"
    raise DataError(
        f"{' and '.join(sources)}: label 4 without label 3 under BraTS 2023+ file names reads two "
        f"ways: as {_READINGS['2017']} it is ET (set {rules.option}.convention=2017), as "
        f"{_READINGS['2024']} it is a cavity and the case has no ET (set "
        f"{rules.option}.convention=2024 and {rules.option}.resection_cavity=background)"
    )


def classes_of(labels: np.ndarray, convention: str, rules: LabelRules, source: str) -> np.ndarray:
    """Map an integer label map in ``convention`` (2017, 2023 or 2024) to uint8 classes 0..3."""
    mapping = dict(LABEL_TO_CLASS[convention])
    if convention == "2024" and rules.resection_cavity == "background":
        mapping[RESECTION_CAVITY_LABEL] = 0
    unexpected = [v for v in sorted(label_values(labels)) if v not in mapping]
    if unexpected:
        shown = ", ".join(str(v) for v in unexpected[:10])
        raise DataError(
            f"{source}: unexpected label value(s) {shown}; "
            + _label_hint(convention, rules, unexpected, mapping)
        )
    classes = np.zeros(labels.shape, dtype=np.uint8)
    for label, cls in mapping.items():
        if cls:
            classes[labels == label] = cls
    return classes


def decode_labels(
    labels: np.ndarray, naming: str, source: str, rules: LabelRules | None = None
) -> tuple[np.ndarray, str]:
    """uint8 classes 0..3 of a segmentation of any numeric dtype, and the label convention it was
    read in; ``naming``: the case's file naming; ``source`` names the file in errors."""
    rules = rules or LabelRules.default()
    labels = whole_labels(labels, source)
    convention = resolve_convention(naming, label_values(labels), rules, [source])
    return classes_of(labels, convention, rules, source), convention


def labels_to_classes(
    labels: np.ndarray, naming: str, source: str, rules: LabelRules | None = None
) -> np.ndarray:
    """uint8 classes 0..3 of a segmentation (see decode_labels)."""
    return decode_labels(labels, naming, source, rules)[0]


def _label_hint(
    convention: str, rules: LabelRules, unexpected: list[int], mapping: dict[int, int]
) -> str:
    allowed = ", ".join(str(v) for v in mapping)
    option = rules.option
    how = (
        f"{option}.convention={convention}"
        if rules.convention != AUTO
        else f"their file names ({option}.convention=auto)"
    )
    reading = f"{_READINGS[convention]}, from {how}, means labels {allowed}"
    if convention == "2024" and RESECTION_CAVITY_LABEL in unexpected:
        return (
            f"{reading} and label 4 the resection cavity, not a tumour class: set "
            f"{option}.resection_cavity=background to count it as background"
        )
    if convention == "2017" and ET_2023 in unexpected:
        return f"{reading}; if label 3 is ET, set {option}.convention=2023"
    if convention == "2023" and RESECTION_CAVITY_LABEL in unexpected:
        return (
            f"{reading}; if label 4 is ET, set {option}.convention=2017; if it is the BraTS "
            f"2024 resection cavity, set {option}.convention=2024"
        )
    return reading


def to_convention(classes: np.ndarray, convention: str) -> np.ndarray:
    """Map classes 0..3 back to the label values of ``convention`` (a label convention, or a file
    naming for the labels it implies), uint8, e.g. to write a prediction."""
    lut = np.zeros(NUM_CLASSES, dtype=np.uint8)
    for label, cls in LABEL_TO_CLASS[NAMING_LABELS.get(convention, convention)].items():
        lut[cls] = label
    classes = np.asarray(classes)
    if classes.size and (classes.min() < 0 or classes.max() >= NUM_CLASSES):
        raise ValueError(f"classes must lie in 0..{NUM_CLASSES - 1}")
    return lut[classes]
