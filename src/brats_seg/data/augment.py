"""Optional training-time augmentation in TensorFlow, applied to images and labels consistently.

Spatial, per slice: a left-right flip (rows are the patient's left-right axis), a small rotation and
scaling about the slice centre (bilinear for images, nearest for labels, zeros outside).

Appearance, per slice and inside the brain only (background stays 0), for carrying a few patients'
contrasts to new ones. The brain is where any channel of a slice is non-zero (each slice of 2.5D
input on its own channels), as preprocessing defines it: under ``minmax`` or ``percentile``
normalisation a channel's darkest brain voxels are exactly 0 and stay brain. It applies a gamma
per channel (on the slice's brain intensities rescaled to [0, 1]), an
intensity gain and shift per channel, a Gaussian blur and additive Gaussian noise. With 2.5D input
(``context_slices``) the neighbouring slices' copies of a modality get that modality's gain, shift
and gamma.

Lesion contrast (``lesion_contrast=a``, labels needed, so training only): per slice and channel, the
tumour's (``lesion_region=tumour``) or the edema's (``edema``) contrast against the slice's healthy
brain is scaled by a factor drawn from [1 - a, 1], under its mask softened by a Gaussian of 2
pixels (so no edge marks the label's outline against healthy brain). It shows the model tumours
fainter than its few training patients' (one shared BraTS patient's edema is at the 83rd
percentile of its healthy brain's FLAIR, where the others' are at the 95th-99th). With 2.5D input
only the slice's own channels are faded: the labels are the slice's, and the neighbouring slices'
lesions lie elsewhere.

The random draws come from the input pipeline's seeded numpy generator (one row of uniform numbers
per slice), so augmentation is reproducible and differs every epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from brats_seg.config_schema import to_plain
from brats_seg.data.labels import EDEMA


@dataclass(frozen=True)
class AugmentSettings:
    """``data.augment``; off unless ``enabled``. The values and their domains are
    configs/data/brats.yaml's and the schema's."""

    enabled: bool
    flip: bool
    rotation_deg: float
    scale: float
    intensity: float
    gamma: float
    blur: float
    noise: float
    lesion_contrast: float
    lesion_region: str  # which labels lesion contrast fades: "tumour" (all) or "edema"

    @classmethod
    def from_cfg(cls, cfg: Any) -> AugmentSettings:
        """From ``data.augment`` of a composed config."""
        if isinstance(cfg, AugmentSettings):
            return cfg
        cfg = to_plain(cfg)
        numbers = [f.name for f in fields(cls) if f.type == "float"]
        return cls(
            enabled=bool(cfg["enabled"]),
            flip=bool(cfg["flip"]),
            **{name: float(cfg[name]) for name in numbers},
            lesion_region=str(cfg["lesion_region"]),
        )


def param_count(channels: int, settings: AugmentSettings) -> int:
    """Uniform numbers needed per slice: flip, angle, scale, a gain and a shift per channel, then
    (when on) a gamma per channel, a blur width, a noise level and two numbers seeding the noise,
    and a lesion contrast factor per channel."""
    return 3 + 2 * channels + _extra_offsets(channels, settings)[-1]


def _extra_offsets(channels: int, settings: AugmentSettings) -> tuple[int, int, int, int, int]:
    """Columns of gamma, blur, noise and lesion contrast after the first 3 + 2C, and how many extra
    columns there are."""
    gamma = 0
    blur = gamma + (channels if settings.gamma > 0 else 0)
    noise = blur + (1 if settings.blur > 0 else 0)
    lesion = noise + (3 if settings.noise > 0 else 0)
    end = lesion + (channels if settings.lesion_contrast > 0 else 0)
    return gamma, blur, noise, lesion, end


def spatial(x, y, u, settings: AugmentSettings):
    """Flip, rotation and scaling of images and labels together."""
    import tensorflow as tf

    if settings.flip:
        flip = u[:, 0] < 0.5
        x = tf.where(flip[:, None, None, None], tf.reverse(x, axis=[1]), x)
        y = tf.where(flip[:, None, None], tf.reverse(y, axis=[1]), y)
    if settings.rotation_deg > 0 or settings.scale > 0:
        angle = (2.0 * u[:, 1] - 1.0) * math.radians(settings.rotation_deg)
        scale = 1.0 + (2.0 * u[:, 2] - 1.0) * settings.scale
        transforms = _rotation_scaling(angle, scale, tf.shape(x)[1], tf.shape(x)[2])
        x = _transform(x, transforms, "BILINEAR")
        labels = _transform(tf.cast(y[..., None], tf.float32), transforms, "NEAREST")
        y = tf.cast(tf.round(labels[..., 0]), tf.uint8)
    return x, y


def appearance(x, u, settings: AugmentSettings, base_channels: int | None = None, y=None):
    """Lesion contrast (needs the labels ``y``), gamma, gain and shift, blur and noise, inside the
    brain (see ``brain_mask``)."""
    import tensorflow as tf

    channels = x.shape[-1]
    base = base_channels or channels
    copies = channels // base
    brain = brain_mask(x, base)
    extra = 3 + 2 * base
    gamma_col, blur_col, noise_col, lesion_col, _ = (
        extra + k for k in _extra_offsets(base, settings)
    )
    if settings.lesion_contrast > 0 and y is not None:
        factor = 1.0 - u[:, lesion_col : lesion_col + base] * settings.lesion_contrast
        # the slice's own channels only: y is its labels, not its neighbours'
        own = _lesion_contrast(
            x[..., :base], y, brain[..., :base], factor, LESION_REGIONS[settings.lesion_region]
        )
        x = tf.concat([own, x[..., base:]], axis=-1)
    if settings.gamma > 0:
        log_gamma = (2.0 * u[:, gamma_col : gamma_col + base] - 1.0) * math.log1p(settings.gamma)
        x = _gamma(x, brain, tf.tile(tf.exp(log_gamma), [1, copies]))
    if settings.intensity > 0:
        gain = 1.0 + (2.0 * u[:, 3 : 3 + base] - 1.0) * settings.intensity
        shift = (2.0 * u[:, 3 + base : 3 + 2 * base] - 1.0) * settings.intensity
        x = (
            x * tf.tile(gain, [1, copies])[:, None, None, :]
            + tf.tile(shift, [1, copies])[:, None, None, :]
        )
    if settings.blur > 0:
        x = _blur(x, u[:, blur_col] * settings.blur, settings.blur)
    if settings.noise > 0:
        sd = u[:, noise_col] * settings.noise
        seed = tf.cast(u[0, noise_col + 1 : noise_col + 3] * 2.0**31, tf.int64)
        x = x + tf.random.stateless_normal(tf.shape(x), seed=seed) * sd[:, None, None, None]
    return tf.where(brain, x, tf.zeros_like(x))


def brain_mask(x, base_channels: int):
    """(B, H, W, C) bool: the brain of each slice, where any of its ``base_channels`` channels is
    non-zero, repeated over them; with 2.5D input each neighbouring slice's copy of the channels has
    its own."""
    import tensorflow as tf

    shape = tf.shape(x)
    copies = x.shape[-1] // base_channels
    grouped = tf.reshape(x, tf.concat([shape[:3], [copies, base_channels]], axis=0))
    brain = tf.reduce_any(tf.not_equal(grouped, 0.0), axis=-1, keepdims=True)
    return tf.reshape(tf.broadcast_to(brain, tf.shape(grouped)), shape)


LESION_SOFTNESS = 2.0  # pixels: the Gaussian that softens the lesion mask's outline
LESION_REGIONS = {"tumour": None, "edema": EDEMA}  # None: every tumour class


def _lesion_contrast(x, y, brain, factor, label=None):
    """Per slice and channel: the lesion's difference from the mean of the slice's healthy brain
    scaled by ``factor`` (B, C), under the lesion mask (every tumour class, or class ``label``)
    softened by a Gaussian."""
    import tensorflow as tf

    tumour = tf.cast(tf.greater(y, 0), x.dtype)[..., None]
    lesion = tumour if label is None else tf.cast(tf.equal(y, label), x.dtype)[..., None]
    healthy = tf.cast(brain, x.dtype) * (1.0 - tumour)
    count = tf.reduce_sum(healthy, axis=[1, 2], keepdims=True)
    reference = tf.reduce_sum(x * healthy, axis=[1, 2], keepdims=True) / tf.maximum(count, 1.0)
    width = tf.fill(tf.shape(x)[:1], LESION_SOFTNESS)
    mask = tf.clip_by_value(_blur(lesion, width, LESION_SOFTNESS), 0.0, 1.0)
    if label is not None:  # the other tumour classes keep their contrast
        mask = mask * (1.0 - tumour + lesion)
    scale = 1.0 - (1.0 - factor[:, None, None, :]) * mask
    return reference + (x - reference) * scale


def _gamma(x, brain, gamma):
    """Per slice and channel: rescale the brain's values to [0, 1], raise to ``gamma`` (B, C), scale
    back."""
    import tensorflow as tf

    inf = tf.constant(float("inf"), x.dtype)
    lo = tf.reduce_min(tf.where(brain, x, inf), axis=[1, 2], keepdims=True)
    hi = tf.reduce_max(tf.where(brain, x, -inf), axis=[1, 2], keepdims=True)
    has_brain = tf.math.is_finite(lo)
    lo = tf.where(has_brain, lo, 0.0)
    span = tf.where(has_brain, hi - lo, 0.0)
    unit = tf.clip_by_value((x - lo) / tf.maximum(span, 1e-6), 0.0, 1.0)
    return tf.pow(unit, gamma[:, None, None, :]) * span + lo


def _blur(x, sigma, max_sigma: float):
    """Separable Gaussian blur with a width ``sigma`` (B,) per slice; a width near 0 leaves the
    slice as it is."""
    import tensorflow as tf

    radius = max(1, math.ceil(3.0 * max_sigma))
    taps = tf.range(-radius, radius + 1, dtype=tf.float32)
    safe = tf.maximum(sigma, 1e-3)[:, None]
    weights = tf.exp(-0.5 * tf.square(taps[None, :] / safe))
    weights = weights / tf.reduce_sum(weights, axis=1, keepdims=True)  # (B, taps)
    for axis in (1, 2):
        padding = [[0, 0]] * 4
        padding[axis] = [radius, radius]
        padded = tf.pad(x, padding)
        size = tf.shape(x)[axis]
        total = tf.zeros_like(x)
        for k in range(2 * radius + 1):
            window = padded[:, k : k + size] if axis == 1 else padded[:, :, k : k + size]
            total += window * weights[:, k][:, None, None, None]
        x = total
    return x


def _rotation_scaling(angle, scale, height, width):
    """(B, 8) projective transforms mapping each output pixel to its input position (rotation +
    scaling about the centre), in TensorFlow's (column, row) convention."""
    import tensorflow as tf

    cx = (tf.cast(width, tf.float32) - 1.0) / 2.0
    cy = (tf.cast(height, tf.float32) - 1.0) / 2.0
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    a0, a1, b0, b1 = cos, sin, -sin, cos
    a2 = cx - a0 * cx - a1 * cy
    b2 = cy - b0 * cx - b1 * cy
    zeros = tf.zeros_like(angle)
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def _transform(images, transforms, interpolation: str):
    import tensorflow as tf

    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=tf.constant(0.0, tf.float32),
        interpolation=interpolation,
        fill_mode="CONSTANT",
    )
