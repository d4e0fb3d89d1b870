"""Evaluation metrics in plain numpy/scipy (no TensorFlow): the study's pooled confusion matrix and
the BraTS per-patient region metrics."""

from brats_seg.metrics.confusion import (
    METRIC_NAMES,
    ConfusionAccumulator,
    confusion_matrix,
    per_class_metrics,
)
from brats_seg.metrics.regions import (
    EMPTY_RULES,
    HD95_EMPTY,
    REGIONS,
    dice,
    hd95,
    region_scores,
    summarise,
)

__all__ = [
    "EMPTY_RULES",
    "HD95_EMPTY",
    "METRIC_NAMES",
    "REGIONS",
    "ConfusionAccumulator",
    "confusion_matrix",
    "dice",
    "hd95",
    "per_class_metrics",
    "region_scores",
    "summarise",
]
