"""The study's pooled confusion matrix and its one-vs-rest per-class metrics (numpy only).

Every test pixel (argmax class) goes into one KxK matrix, rows = truth, columns = prediction. Per
class c, one-vs-rest: sensitivity TP/(TP+FN), specificity TN/(TN+FP), F1 2TP/(2TP+FP+FN), precision
TP/(TP+FP). A ratio whose denominator is 0 (for example precision of a class never predicted) is
NaN, and the column averages skip NaN entries (``col_ave`` over all classes as the study printed it,
background included; ``col_ave_tumour`` over classes 1..3 only); a column with no defined entry
averages to NaN. ``col_ave_study`` is the study's own arithmetic, a plain mean in which one NaN
makes the average NaN: a model that never predicts some class gets a good-looking ``col_ave`` but a
NaN ``col_ave_study``. Such a model is flagged: ``never_predicted`` lists the classes present in the
truth that no pixel was predicted as.
"""

from __future__ import annotations

import warnings

import numpy as np

from brats_seg.data.labels import CLASS_NAMES, NUM_CLASSES
from brats_seg.errors import DataError

METRIC_NAMES: tuple[str, ...] = ("sensitivity", "specificity", "f1", "precision")

# Pixels per bincount call: small enough to stay in cache, large enough to amortise the call.
_CHUNK = 1 << 20


def _labels_u8(labels: np.ndarray, num_classes: int, what: str) -> np.ndarray:
    """Flat uint8 view of class labels, checked to lie in 0..num_classes-1."""
    flat = np.ravel(np.asarray(labels))
    if flat.size == 0:
        return flat.astype(np.uint8)
    if flat.dtype.kind not in "biu":
        raise DataError(f"{what}: expected integer class labels, got dtype {flat.dtype}")
    low, high = flat.min(), flat.max()
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise DataError(f"{what}: class labels must be in 0..{num_classes - 1}, found {bad}")
    return flat if flat.dtype == np.uint8 else flat.astype(np.uint8)


def confusion_matrix(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = NUM_CLASSES
) -> np.ndarray:
    """(K, K) int64 matrix of pixel counts, rows = true class, columns = predicted class.

    Arrays of any (equal) shape holding integer labels 0..K-1; uint8 input avoids a conversion copy.
    One pass: the pair code ``true * K + pred`` (uint8 when K*K <= 256) is histogrammed chunk by
    chunk.
    """
    if np.shape(y_true) != np.shape(y_pred):
        raise DataError(
            f"confusion matrix: truth shape {np.shape(y_true)} "
            f"!= prediction shape {np.shape(y_pred)}"
        )
    truth = _labels_u8(y_true, num_classes, "truth")
    pred = _labels_u8(y_pred, num_classes, "prediction")
    bins = num_classes * num_classes
    code_dtype = np.uint8 if bins <= 256 else np.uint16
    counts = np.zeros(bins, dtype=np.int64)
    buffer = np.empty(min(_CHUNK, truth.size), dtype=code_dtype)
    for start in range(0, truth.size, _CHUNK):
        stop = min(start + _CHUNK, truth.size)
        code = buffer[: stop - start]
        np.multiply(truth[start:stop], num_classes, out=code, dtype=code_dtype)
        code += pred[start:stop]
        counts += np.bincount(code, minlength=bins)
    return counts.reshape(num_classes, num_classes)


class ConfusionAccumulator:
    """Pools confusion matrices over batches: ``acc.add(true_batch, pred_batch)``, then
    ``acc.matrix``."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def add(self, y_true: np.ndarray, y_pred: np.ndarray) -> None:
        self.matrix += confusion_matrix(y_true, y_pred, self.num_classes)

    @property
    def pixels(self) -> int:
        return int(self.matrix.sum())

    def metrics(self) -> dict:
        return per_class_metrics(self.matrix)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator with 0/0 (any x/0) -> NaN."""
    numerator = numerator.astype(np.float64)
    denominator = denominator.astype(np.float64)
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _nanmean(values: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values))


def per_class_metrics(cm: np.ndarray) -> dict:
    """One-vs-rest metrics of a pooled confusion matrix.

    Returns ``{"labels": [...], "sensitivity": [K floats], "specificity": [...], "f1": [...],
    "precision": [...], "col_ave": {metric: mean over all K classes}, "col_ave_tumour": {metric:
    mean over classes 1..K-1}}``. Undefined ratios (denominator 0) are NaN and skipped by the
    averages.
    """
    cm = np.asarray(cm, dtype=np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {cm.shape}")
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = cm.sum() - tp - fp - fn
    values = {
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
    }
    k = cm.shape[0]
    labels = list(CLASS_NAMES) if k == len(CLASS_NAMES) else [str(c) for c in range(k)]
    result: dict = {"labels": labels}
    result.update({name: [float(v) for v in values[name]] for name in METRIC_NAMES})
    result["col_ave"] = {name: _nanmean(values[name]) for name in METRIC_NAMES}
    result["col_ave_tumour"] = {name: _nanmean(values[name][1:]) for name in METRIC_NAMES}
    result["col_ave_study"] = {name: float(np.mean(values[name])) for name in METRIC_NAMES}
    result["never_predicted"] = never_predicted(cm)
    return result


def never_predicted(cm: np.ndarray) -> list[int]:
    """Classes with truth pixels but not one predicted pixel (a collapsed model)."""
    cm = np.asarray(cm)
    return [int(c) for c in np.flatnonzero((cm.sum(axis=1) > 0) & (cm.sum(axis=0) == 0))]


def collapse_note(classes: list[int]) -> str | None:
    """``"collapsed: classes 1, 3 never predicted"``, or None when every class in the truth was
    predicted."""
    if not classes:
        return None
    noun = "class" if len(classes) == 1 else "classes"
    return f"collapsed: {noun} {', '.join(map(str, classes))} never predicted"
