"""Segmentation losses of the study (and a few standard alternatives) as registered Keras losses.

Every loss takes ``y_true`` one-hot of shape (B, H, W, C) and ``y_pred`` softmax probabilities of
the same shape, casts both to float32 first (safe under ``mixed_bfloat16``) and returns ONE float32
scalar for the whole batch: the sums and means run over every pixel of every sample at once, as the
study's losses did. Keras' reduction leaves a scalar unchanged (``sum_over_batch_size`` divides by
the size of a 0-d tensor, 1), so ``loss(y_true, y_pred)`` returns exactly what ``call`` computes.

Under tf.distribute (mirrored, multi-worker) each replica sees only its part of the global batch.
Every loss is therefore written as sums over pixels (``batch_sums``) and a function of those sums
(``from_sums``): the sums are added across replicas first, so each replica computes the loss of the
whole global batch (a pooled Dice is not the mean of the replicas' Dice). Keras scales its own
losses by 1 / replicas because it sums the replicas' gradients and multiplies the logged loss back
by the replica count; it skips that scaling for a scalar, so these losses apply it themselves. The
result: the same loss, gradients and logged values as on one device, whatever the number of replicas
and however unevenly a last batch splits.

Names follow the study's table: dice_loss, bce_dice_loss, ell_loss (alpha), soft_dice_loss,
weighted; plus exp_log (Wong et al., MICCAI 2018), focal (Lin et al., 2017), tversky (Salehi et al.,
2017) and dice_ce (cross-entropy + Dice of the tumour classes or BraTS regions, as nnU-Net trains).

Class weights from label counts (``weighted``, ``exp_log``): a class with count 0 gets weight 0 (it
cannot be learned from these labels, and a finite weight keeps the loss finite).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from brats_seg.config_schema import NUM_CLASSES, to_plain
from brats_seg.errors import ConfigError

# Probabilities are clipped to [EPSILON, 1 - EPSILON] before any log, as Keras' cross-entropies do.
EPSILON = 1e-7
# Floor for the base of x**gamma (gamma < 1): keeps the gradient finite at a perfect prediction.
_POW_FLOOR = 1e-12

_PACKAGE = "brats_seg"


def _float32(y_true, y_pred):
    return ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")


def _pixel_axes(y) -> tuple[int, ...]:
    """All axes but the class axis: sums over them pool the whole batch."""
    return tuple(range(len(y.shape) - 1))


def _clip(p):
    return ops.clip(p, EPSILON, 1.0 - EPSILON)


def _count(x):
    """Number of elements of ``x`` as a float32 scalar (summed across replicas like any sum)."""
    return ops.cast(ops.size(x), "float32")


def _pixel_count(y):
    return _count(y[..., 0])


def sum_over_replicas(sums: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Add ``sums`` across the replicas of the current tf.distribute replica context.

    Returns the summed values and the number of replicas (1, and ``sums`` unchanged, outside a
    multi-replica context, e.g. a plain call, one device, or Keras building the model symbolically).
    The all-reduce is differentiable: its gradient is the all-reduce of the replicas' gradients.
    """
    if keras.backend.backend() != "tensorflow":
        return sums, 1
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return sums, 1
    return context.all_reduce(tf.distribute.ReduceOp.SUM, sums), context.num_replicas_in_sync


def bce_sums(y_true, y_pred) -> dict[str, Any]:
    """Sums behind the mean binary cross-entropy over every element of the one-hot tensor."""
    p = _clip(y_pred)
    bce = y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p)
    return {"bce": -ops.sum(bce), "elements": _count(y_pred)}


def bce_from_sums(sums) -> Any:
    return sums["bce"] / sums["elements"]


def binary_crossentropy(y_true, y_pred):
    """Mean binary cross-entropy over every element of the one-hot tensor (probabilities
    clipped)."""
    return bce_from_sums(bce_sums(y_true, y_pred))


def global_dice_sums(y_true, y_pred) -> dict[str, Any]:
    """Sums behind the study's dice_loss: one soft Dice over the whole tensor, background too."""
    return {"intersection": ops.sum(y_true * y_pred), "total": ops.sum(y_true) + ops.sum(y_pred)}


def global_dice_loss_from_sums(sums, smooth: float) -> Any:
    return 1.0 - (2.0 * sums["intersection"] + smooth) / (sums["total"] + smooth)


def class_dice_sums(y_true, y_pred) -> dict[str, Any]:
    """Sums behind the soft Dice of each class pooled over the batch: shape (C,) each."""
    axes = _pixel_axes(y_pred)
    return {
        "class_intersection": ops.sum(y_true * y_pred, axis=axes),
        "class_total": ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes),
    }


def class_dice_from_sums(sums, smooth: float) -> Any:
    return (2.0 * sums["class_intersection"] + smooth) / (sums["class_total"] + smooth)


def counts_to_weights(class_counts: Sequence[float], power: float = 1.0) -> list[float]:
    """Inverse-frequency weights w_c = (total / (n_classes * count_c)) ** power; 0 for a class with
    count 0.

    ``power`` 1 is plain inverse frequency; 0.5 (the square root) tempers the weights, which trades
    some recall of the rare classes for fewer false positives.
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    total = counts.sum()
    with np.errstate(divide="ignore"):
        weights = np.where(counts > 0, (total / (len(counts) * counts)) ** power, 0.0)
    return [float(w) for w in weights]


def counts_to_exp_log_weights(class_counts: Sequence[float]) -> list[float]:
    """Wong et al.'s label weights w_l = ((sum_k f_k) / f_l) ** 0.5; 0 for a class with count 0."""
    counts = np.asarray(class_counts, dtype=np.float64)
    total = counts.sum()
    with np.errstate(divide="ignore"):
        weights = np.where(counts > 0, np.sqrt(total / counts), 0.0)
    return [float(w) for w in weights]


class _BatchLoss(keras.losses.Loss):
    """Base: always computes in float32 and returns one scalar for the (global) batch.

    Subclasses give the sums over pixels the loss needs (``batch_sums``) and the loss as a function
    of those sums (``from_sums``); the base adds the sums across replicas and scales for Keras'
    gradient sum.
    """

    def __init__(self, name: str, reduction: str | None = "sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction, dtype="float32")

    def call(self, y_true, y_pred):
        y_true, y_pred = _float32(y_true, y_pred)
        sums, replicas = sum_over_replicas(self.batch_sums(y_true, y_pred))
        loss = self.from_sums(sums)
        # Keras adds the replicas' gradients and multiplies the tracked loss by the replica count.
        return loss / float(replicas) if replicas > 1 else loss

    def batch_sums(self, y_true, y_pred) -> dict[str, Any]:
        raise NotImplementedError

    def from_sums(self, sums: dict[str, Any]):
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self.params()}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DiceLoss(_BatchLoss):
    """Study's dice_loss: 1 - (2*sum(y*p) + s) / (sum(y) + sum(p) + s) over the whole batch
    tensor."""

    def __init__(
        self, smooth: float = 1e-6, name: str = "dice_loss", reduction="sum_over_batch_size"
    ):
        super().__init__(name=name, reduction=reduction)
        self.smooth = float(smooth)

    def batch_sums(self, y_true, y_pred):
        return global_dice_sums(y_true, y_pred)

    def from_sums(self, sums):
        return global_dice_loss_from_sums(sums, self.smooth)

    def params(self):
        return {"smooth": self.smooth}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ELLLoss(_BatchLoss):
    """Study's ell_loss(alpha): alpha * BCE + (1 - alpha) * dice_loss (not Wong et al.'s loss; see
    ExpLogLoss)."""

    def __init__(
        self,
        alpha: float,
        smooth: float = 1e-6,
        name: str = "ell_loss",
        reduction="sum_over_batch_size",
    ):
        super().__init__(name=name, reduction=reduction)
        self.alpha = float(alpha)
        self.smooth = float(smooth)

    def batch_sums(self, y_true, y_pred):
        return {**bce_sums(y_true, y_pred), **global_dice_sums(y_true, y_pred)}

    def from_sums(self, sums):
        dice = global_dice_loss_from_sums(sums, self.smooth)
        return self.alpha * bce_from_sums(sums) + (1.0 - self.alpha) * dice

    def params(self):
        return {"alpha": self.alpha, "smooth": self.smooth}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BCEDiceLoss(_BatchLoss):
    """Study's bce_dice_loss: BCE on the one-hot channels + dice_loss."""

    def __init__(
        self, smooth: float = 1e-6, name: str = "bce_dice_loss", reduction="sum_over_batch_size"
    ):
        super().__init__(name=name, reduction=reduction)
        self.smooth = float(smooth)

    def batch_sums(self, y_true, y_pred):
        return {**bce_sums(y_true, y_pred), **global_dice_sums(y_true, y_pred)}

    def from_sums(self, sums):
        return bce_from_sums(sums) + global_dice_loss_from_sums(sums, self.smooth)

    def params(self):
        return {"smooth": self.smooth}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SoftDiceLoss(_BatchLoss):
    """Study's soft_dice_loss: 1 - mean over classes of the per-class soft Dice (pooled over the
    batch)."""

    def __init__(
        self, smooth: float = 1e-6, name: str = "soft_dice_loss", reduction="sum_over_batch_size"
    ):
        super().__init__(name=name, reduction=reduction)
        self.smooth = float(smooth)

    def batch_sums(self, y_true, y_pred):
        return class_dice_sums(y_true, y_pred)

    def from_sums(self, sums):
        return 1.0 - ops.mean(class_dice_from_sums(sums, self.smooth))

    def params(self):
        return {"smooth": self.smooth}


def brats_regions(y):
    """One-hot classes or softmax (..., 4) -> the BraTS regions (..., 3): WT = 1+2+3, TC = 1+3, ET =
    3."""
    return ops.stack([y[..., 1] + y[..., 2] + y[..., 3], y[..., 1] + y[..., 3], y[..., 3]], axis=-1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DiceCELoss(_BatchLoss):
    """Cross-entropy + 1 - mean soft Dice (pooled over the batch) of the tumour classes 1..3, or
    with ``regions`` of the BraTS regions WT, TC and ET (sums of the softmax), as nnU-Net trains.
    Background is left out of the Dice; a class or region absent from the batch pulls its
    probability towards 0 through the smoothing term.
    """

    def __init__(
        self,
        regions: bool = True,
        smooth: float = 1.0,
        name: str = "dice_ce_loss",
        reduction="sum_over_batch_size",
    ):
        super().__init__(name=name, reduction=reduction)
        self.regions = bool(regions)
        self.smooth = float(smooth)

    def batch_sums(self, y_true, y_pred):
        nll = -ops.sum(y_true * ops.log(_clip(y_pred)))
        if self.regions:
            truth, pred = brats_regions(y_true), brats_regions(y_pred)
        else:
            truth, pred = y_true[..., 1:], y_pred[..., 1:]
        return {"nll": nll, "pixels": _pixel_count(y_pred), **class_dice_sums(truth, pred)}

    def from_sums(self, sums):
        cross_entropy = sums["nll"] / sums["pixels"]
        return cross_entropy + 1.0 - ops.mean(class_dice_from_sums(sums, self.smooth))

    def params(self):
        return {"regions": self.regions, "smooth": self.smooth}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class WeightedCrossEntropy(_BatchLoss):
    """Weighted categorical cross-entropy: mean over pixels of -sum_c w_c * y_c * ln(p_c).

    The mean is a plain mean over pixels (not divided by the sum of the weights).
    """

    def __init__(
        self,
        class_weights: Sequence[float],
        name: str = "weighted_cce",
        reduction="sum_over_batch_size",
    ):
        super().__init__(name=name, reduction=reduction)
        self.class_weights = [float(w) for w in class_weights]

    def batch_sums(self, y_true, y_pred):
        weights = ops.convert_to_tensor(self.class_weights, dtype="float32")
        nll = -ops.sum(weights * y_true * ops.log(_clip(y_pred)))
        return {"nll": nll, "pixels": _pixel_count(y_pred)}

    def from_sums(self, sums):
        return sums["nll"] / sums["pixels"]

    def params(self):
        return {"class_weights": list(self.class_weights)}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ExpLogLoss(_BatchLoss):
    """Exponential logarithmic loss (Wong et al., MICCAI 2018).

    L = w_dice * mean_c[(-ln Dice_c) ** gamma_dice] + w_cross * mean_x[w_l * (-ln p_l) **
    gamma_cross], where Dice_c = (2*sum(y*p) + smooth) / (sum(y) + sum(p) + smooth) is pooled over
    the batch, l is the true label of pixel x, p_l its clipped probability and w_l = ((sum_k f_k) /
    f_l) ** 0.5 (``label_weights``).
    """

    def __init__(
        self,
        label_weights: Sequence[float],
        w_dice: float = 0.8,
        w_cross: float = 0.2,
        gamma_dice: float = 0.3,
        gamma_cross: float = 0.3,
        smooth: float = 1.0,
        name: str = "exp_log_loss",
        reduction="sum_over_batch_size",
    ):
        super().__init__(name=name, reduction=reduction)
        self.label_weights = [float(w) for w in label_weights]
        self.w_dice = float(w_dice)
        self.w_cross = float(w_cross)
        self.gamma_dice = float(gamma_dice)
        self.gamma_cross = float(gamma_cross)
        self.smooth = float(smooth)

    def batch_sums(self, y_true, y_pred):
        weights = ops.convert_to_tensor(self.label_weights, dtype="float32")
        p_true = ops.sum(y_true * _clip(y_pred), axis=-1)
        w_true = ops.sum(y_true * weights, axis=-1)
        neg_log = ops.maximum(-ops.log(p_true), _POW_FLOOR)
        cross = ops.sum(w_true * ops.power(neg_log, self.gamma_cross))
        return {**class_dice_sums(y_true, y_pred), "cross": cross, "pixels": _pixel_count(y_pred)}

    def from_sums(self, sums):
        dice = class_dice_from_sums(sums, self.smooth)
        dice_term = ops.mean(ops.power(ops.maximum(-ops.log(dice), _POW_FLOOR), self.gamma_dice))
        cross_term = sums["cross"] / sums["pixels"]
        return self.w_dice * dice_term + self.w_cross * cross_term

    def params(self):
        return {
            "label_weights": list(self.label_weights),
            "w_dice": self.w_dice,
            "w_cross": self.w_cross,
            "gamma_dice": self.gamma_dice,
            "gamma_cross": self.gamma_cross,
            "smooth": self.smooth,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FocalLoss(_BatchLoss):
    """Categorical focal loss: mean over pixels of -sum_c alpha * y_c * (1 - p_c) ** gamma *
    ln(p_c)."""

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float = 0.25,
        name: str = "focal_loss",
        reduction="sum_over_batch_size",
    ):
        super().__init__(name=name, reduction=reduction)
        self.gamma = float(gamma)
        self.alpha = float(alpha)

    def batch_sums(self, y_true, y_pred):
        p = _clip(y_pred)
        per_class = -self.alpha * y_true * ops.power(1.0 - p, self.gamma) * ops.log(p)
        return {"focal": ops.sum(per_class), "pixels": _pixel_count(y_pred)}

    def from_sums(self, sums):
        return sums["focal"] / sums["pixels"]

    def params(self):
        return {"gamma": self.gamma, "alpha": self.alpha}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TverskyLoss(_BatchLoss):
    """Tversky loss: 1 - mean_c (TP + s) / (TP + alpha*FP + beta*FN + s), soft counts pooled over
    the batch."""

    def __init__(
        self,
        alpha: float = 0.3,
        beta: float = 0.7,
        smooth: float = 1e-6,
        name: str = "tversky_loss",
        reduction="sum_over_batch_size",
    ):
        super().__init__(name=name, reduction=reduction)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.smooth = float(smooth)

    def batch_sums(self, y_true, y_pred):
        axes = _pixel_axes(y_pred)
        return {
            "tp": ops.sum(y_true * y_pred, axis=axes),
            "fp": ops.sum((1.0 - y_true) * y_pred, axis=axes),
            "fn": ops.sum(y_true * (1.0 - y_pred), axis=axes),
        }

    def from_sums(self, sums):
        tp, fp, fn = sums["tp"], sums["fp"], sums["fn"]
        index = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)
        return 1.0 - ops.mean(index)

    def params(self):
        return {"alpha": self.alpha, "beta": self.beta, "smooth": self.smooth}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TumourDice(keras.metrics.Metric):
    """Progress-bar metric: mean hard Dice over the tumour classes 1..C-1, pooled over the epoch.

    Predictions and references are taken by argmax; TP/FP/FN are summed over every pixel seen since
    the last reset, so the value equals the mean F1 of classes 1..3 in the study's pooled confusion
    matrix. A class absent from both prediction and reference so far counts as Dice 1.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, name: str = "tumour_dice", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.num_classes = int(num_classes)
        shape = (self.num_classes - 1,)
        self.tp = self.add_variable(shape=shape, initializer="zeros", dtype="float64", name="tp")
        self.fp = self.add_variable(shape=shape, initializer="zeros", dtype="float64", name="fp")
        self.fn = self.add_variable(shape=shape, initializer="zeros", dtype="float64", name="fn")

    def update_state(self, y_true, y_pred, sample_weight=None):
        truth = ops.one_hot(ops.argmax(y_true, axis=-1), self.num_classes, dtype="float32")[..., 1:]
        pred = ops.one_hot(ops.argmax(y_pred, axis=-1), self.num_classes, dtype="float32")[..., 1:]
        axes = _pixel_axes(truth)
        tp = ops.sum(truth * pred, axis=axes)
        fp = ops.sum((1.0 - truth) * pred, axis=axes)
        fn = ops.sum(truth * (1.0 - pred), axis=axes)
        self.tp.assign_add(ops.cast(tp, "float64"))
        self.fp.assign_add(ops.cast(fp, "float64"))
        self.fn.assign_add(ops.cast(fn, "float64"))

    def result(self):
        denominator = 2.0 * self.tp + self.fp + self.fn
        dice = ops.where(denominator > 0, 2.0 * self.tp / ops.maximum(denominator, 1.0), 1.0)
        return ops.cast(ops.mean(dice), "float32")

    def reset_state(self):
        for variable in (self.tp, self.fp, self.fn):
            variable.assign(ops.zeros_like(variable))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


# -------------------------------------------------------------------------------------- from config

_OPTIONS: dict[str, tuple[str, ...]] = {
    "dice": ("smooth",),
    "bce_dice": ("smooth",),
    "ell": ("alpha", "smooth"),
    "soft_dice": ("smooth",),
    "weighted": ("class_weights", "weight_power"),
    "exp_log": ("w_dice", "w_cross", "gamma_dice", "gamma_cross", "smooth", "class_weights"),
    "focal": ("gamma", "alpha"),
    "tversky": ("alpha", "beta", "smooth"),
    "dice_ce": ("regions", "smooth"),
}
LOSS_NAMES: tuple[str, ...] = tuple(sorted(_OPTIONS))


def _loss_name(cfg: dict[str, Any]) -> str:
    name = cfg.get("name")
    if name not in _OPTIONS:
        raise ConfigError(f"loss={name}: unknown loss (valid: {', '.join(LOSS_NAMES)})")
    return name


def _class_weights(cfg: dict[str, Any]) -> list[float] | None:
    weights = cfg["class_weights"]
    return None if weights is None else [float(w) for w in weights]


def _checked_counts(class_counts: Any, name: str) -> np.ndarray:
    if class_counts is None:
        raise ConfigError(
            f"loss={name}: needs the training label counts "
            "(or set loss.class_weights=[w0,w1,w2,w3])"
        )
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.shape != (NUM_CLASSES,) or np.any(counts < 0) or counts.sum() <= 0:
        raise ConfigError(
            f"loss={name}: class counts must be {NUM_CLASSES} non-negative numbers with a positive "
            f"total, got {class_counts!r}"
        )
    return counts


def _check_options(cfg: dict[str, Any], name: str) -> None:
    unknown = sorted(set(cfg) - {"name", *_OPTIONS[name]})
    if unknown:
        raise ConfigError(
            f"loss.{unknown[0]}: not an option of loss={name} (valid: {', '.join(_OPTIONS[name])})"
        )


def build_loss(loss_cfg: Any, class_counts: np.ndarray | None = None) -> keras.losses.Loss:
    """Build the loss named by ``loss_cfg.name`` with its parameters.

    ``loss_cfg`` is the composed ``loss`` node (DictConfig or dict), with every option of the
    loss's config file (configs/loss/*.yaml, the one home of their defaults). ``weighted`` and
    ``exp_log`` derive their class weights from ``class_counts`` (pixel counts of classes 0..3 over
    the training slices) unless ``class_weights`` is set; without either they raise ConfigError.
    """
    cfg = dict(to_plain(loss_cfg))
    name = _loss_name(cfg)
    _check_options(cfg, name)
    # The values were checked with the config (brats_seg.config_schema's loss schemas).
    smooth = float(cfg["smooth"]) if "smooth" in _OPTIONS[name] else 0

    def number(key: str) -> float:
        return float(cfg[key])

    if name == "dice":
        return DiceLoss(smooth=smooth)
    if name == "bce_dice":
        return BCEDiceLoss(smooth=smooth)
    if name == "ell":
        return ELLLoss(alpha=number("alpha"), smooth=smooth)
    if name == "soft_dice":
        return SoftDiceLoss(smooth=smooth)
    if name == "dice_ce":
        return DiceCELoss(regions=bool(cfg["regions"]), smooth=smooth)
    if name == "focal":
        return FocalLoss(gamma=number("gamma"), alpha=number("alpha"))
    if name == "tversky":
        return TverskyLoss(alpha=number("alpha"), beta=number("beta"), smooth=smooth)
    weights = _class_weights(cfg)
    if name == "weighted":
        if weights is None:
            weights = counts_to_weights(_checked_counts(class_counts, name), number("weight_power"))
        return WeightedCrossEntropy(class_weights=weights)
    if weights is None:
        weights = counts_to_exp_log_weights(_checked_counts(class_counts, name))
    return ExpLogLoss(
        label_weights=weights,
        w_dice=number("w_dice"),
        w_cross=number("w_cross"),
        gamma_dice=number("gamma_dice"),
        gamma_cross=number("gamma_cross"),
        smooth=smooth,
    )
