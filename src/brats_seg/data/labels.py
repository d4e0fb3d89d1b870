"""BraTS label values <-> the four classes the models predict.

Classes: 0 background, 1 NCR/NET (necrotic / non-enhancing core), 2 edema, 3 ET (enhancing tumour).
BraTS 2017-2021 store ET as label 4 (convention ``brats2021``); BraTS 2023 and later as label 3
(``brats2023``). BraTS 2024 post-treatment glioma data keeps the 2023 names and adds label 4, the
resection cavity (RC), which is not a tumour class: ``resection_cavity="background"`` maps it to
class 0, ``"error"`` (the default) refuses it.
"""

from __future__ import annotations

import numpy as np

from brats_seg.config_schema import ResectionCavity, choices
from brats_seg.errors import ConfigError, DataError

NUM_CLASSES = 4
CLASS_NAMES: tuple[str, ...] = ("background", "NCR/NET", "edema", "ET")
EDEMA = CLASS_NAMES.index("edema")

# The BraTS evaluation regions, as sets of classes: whole tumour, tumour core, enhancing tumour.
REGIONS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}

# label value on disk -> class, per convention
LABEL_TO_CLASS: dict[str, dict[int, int]] = {
    "brats2021": {0: 0, 1: 1, 2: 2, 4: 3},
    "brats2023": {0: 0, 1: 1, 2: 2, 3: 3},
}


RESECTION_CAVITY_LABEL = 4  # in brats2023 naming: BraTS 2024 post-treatment resection cavity
RESECTION_CAVITY_RULES: tuple[str, ...] = choices(ResectionCavity)  # declared in the config schema


def check_resection_cavity(rule: object) -> str:
    if rule not in RESECTION_CAVITY_RULES:
        raise ConfigError(
            "data.labels.resection_cavity must be one of "
            f"{', '.join(RESECTION_CAVITY_RULES)}, got {rule!r}"
        )
    return str(rule)


def labels_to_classes(
    labels: np.ndarray, convention: str, source: str, resection_cavity: str = "error"
) -> np.ndarray:
    """Map a segmentation of any numeric dtype to uint8 classes 0..3; ``source`` names the file in
    errors."""
    mapping = dict(LABEL_TO_CLASS[convention])
    if convention == "brats2023" and check_resection_cavity(resection_cavity) == "background":
        mapping[RESECTION_CAVITY_LABEL] = 0
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all():
            raise DataError(f"{source}: segmentation holds non-finite values (NaN or inf)")
        labels = np.rint(labels)
    elif labels.dtype.kind not in "iub":
        raise DataError(f"{source}: segmentation has non-numeric dtype {labels.dtype}")
    values = np.unique(labels)
    unexpected = [v for v in values.tolist() if v not in mapping]
    if unexpected:
        shown = ", ".join(_fmt(v) for v in unexpected[:10])
        raise DataError(
            f"{source}: unexpected label value(s) {shown}; "
            + _label_hint(convention, unexpected, mapping)
        )
    classes = np.zeros(labels.shape, dtype=np.uint8)
    for label, cls in mapping.items():
        if cls:
            classes[labels == label] = cls
    return classes


def _label_hint(convention: str, unexpected: list, mapping: dict[int, int]) -> str:
    allowed = ", ".join(str(v) for v in mapping)
    if convention == "brats2023" and RESECTION_CAVITY_LABEL in unexpected:
        return (
            f"BraTS 2023 file names mean labels {allowed} (ET is 3); label 4 with these names "
            "is the resection cavity of BraTS 2024 post-treatment data, not a tumour class: "
            "set data.labels.resection_cavity=background to count it as background"
        )
    if convention == "brats2021" and 3 in unexpected:
        return (
            f"BraTS 2017-2021 file names mean labels {allowed} (ET is 4, label 3 is unused); "
            "a file with label 3 as ET should carry BraTS 2023 names (<case>-seg.nii.gz)"
        )
    return f"{convention} file names mean labels {allowed}"


def to_convention(classes: np.ndarray, convention: str) -> np.ndarray:
    """Map classes 0..3 back to the label values of ``convention`` (uint8), e.g. to write a
    prediction."""
    lut = np.zeros(NUM_CLASSES, dtype=np.uint8)
    for label, cls in LABEL_TO_CLASS[convention].items():
        lut[cls] = label
    classes = np.asarray(classes)
    if classes.size and (classes.min() < 0 or classes.max() >= NUM_CLASSES):
        raise ValueError(f"classes must lie in 0..{NUM_CLASSES - 1}")
    return lut[classes]


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
