"""Turn evaluation numbers into the run folder's metrics.json and the study's per-class table
(metrics.md)."""

from __future__ import annotations

import math
from typing import Any

from brats_seg.data.labels import REGIONS
from brats_seg.metrics.calibration import calibration_markdown
from brats_seg.metrics.confusion import METRIC_NAMES


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    return f"{value:.{digits}f}"


def metrics_markdown(metrics: dict[str, Any], title: str = "") -> str:
    per_class = metrics["per_class"]
    lines = [f"# {title}".rstrip(), ""] if title else []
    if metrics.get("collapsed"):
        lines += [
            f"**{metrics['collapsed']}**: the NaN-skipping Col Ave flatters this model; see "
            "the NaN-propagating row.",
            "",
        ]
    lines += [
        (
            "Pooled over every test pixel of the selected slices "
            "(the study's format; background included in Col Ave)."
        ),
        "",
        "|  | Sensitivity | Specificity | F1 | Precision |",
        "| --- | --- | --- | --- | --- |",
    ]
    for i, label in enumerate(per_class["labels"]):
        cells = " | ".join(_fmt(per_class[m][i]) for m in METRIC_NAMES)
        lines.append(f"| {i} {label} | {cells} |")
    averages = (
        ("col_ave", "Col Ave (NaN skipped)"),
        ("col_ave_study", "Col Ave (study: NaN propagates)"),
        ("col_ave_tumour", "Col Ave (tumour classes)"),
    )
    for key, name in averages:
        if key not in metrics:  # written before the study's arithmetic was recorded
            continue
        cells = " | ".join(_fmt(metrics[key][m]) for m in METRIC_NAMES)
        lines.append(f"| {name} | {cells} |")
    regions = metrics.get("regions")
    if regions:
        n = len(metrics.get("per_patient", []))
        lines += [
            "",
            (
                f"BraTS regions on whole test volumes ({n} patients; "
                f"empty-region rule: {metrics.get('empty_rule', 'brats')})."
            ),
            "",
            "| region | Dice mean | Dice median | HD95 mean (mm) | HD95 median (mm) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for region in REGIONS:
            r = regions[region]
            lines.append(
                f"| {region} | {_fmt(r['dice_mean'])} | {_fmt(r['dice_median'])} | "
                f"{_fmt(r['hd95_mean'], 2)} | {_fmt(r['hd95_median'], 2)} |"
            )
    lines += lesionwise_markdown(metrics)
    lines += calibration_markdown(metrics)
    return "\n".join(lines) + "\n"


def lesionwise_markdown(metrics: dict[str, Any]) -> list[str]:
    """The lesion-wise table of metrics.md, one row per convention and region; [] without
    lesion-wise scores."""
    lesionwise = metrics.get("lesionwise")
    if not lesionwise:
        return []
    names = metrics.get("lesionwise_conventions", {})
    lines = [
        "",
        "Lesion-wise (connected components), mean over test patients; lesion counts summed "
        "over them.",
        "",
        "| convention | region | lesion-wise Dice | lesion-wise HD95 (mm) | TP | FP | FN |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for convention, regions in lesionwise.items():
        for region in REGIONS:
            r = regions[region]
            dice = r.get("dsc_mean", r.get("dice_mean"))
            lines.append(
                f"| {convention} | {region} | {_fmt(dice)} | {_fmt(r['hd95_mean'], 2)} | "
                f"{r['tp']} | {r['fp']} | {r['fn']} |"
            )
    lines.append("")
    lines += [f"- {convention}: {names.get(convention, '')}" for convention in lesionwise]
    return lines
