"""Optional training-time augmentation in TensorFlow, applied to images and labels consistently.

Per slice: a left-right flip (rows are the patient's left-right axis), a small rotation and scaling about the
slice centre (bilinear for images, nearest for labels, zeros outside), and an intensity gain and shift per
channel inside the brain (background stays 0). The random draws come from the input pipeline's seeded numpy
generator (one row of uniform numbers per slice), so augmentation is reproducible and differs every epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from brats_seg.data.settings import to_plain
from brats_seg.errors import ConfigError


@dataclass(frozen=True)
class AugmentSettings:
    """``data.augment``; off unless ``enabled``."""

    enabled: bool = False
    flip: bool = True
    rotation_deg: float = 10.0
    scale: float = 0.1
    intensity: float = 0.1

    @classmethod
    def from_cfg(cls, cfg: Any) -> "AugmentSettings":
        if isinstance(cfg, AugmentSettings):
            return cfg
        cfg = to_plain(cfg) or {}
        enabled, flip = cfg.get("enabled", False), cfg.get("flip", True)
        for name, value in (("enabled", enabled), ("flip", flip)):
            if not isinstance(value, bool):
                raise ConfigError(f"data.augment.{name} must be true or false, got {value!r}")
        limits = {"rotation_deg": 180.0, "scale": 0.9, "intensity": 1.0}
        values = {}
        for name, limit in limits.items():
            value = cfg.get(name, getattr(cls, name))
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= limit:
                raise ConfigError(f"data.augment.{name} must be a number between 0 and {limit}, got {value!r}")
            values[name] = float(value)
        return cls(enabled, flip, **values)


def param_count(channels: int) -> int:
    """Uniform numbers needed per slice: flip, angle, scale, then a gain and a shift per channel."""
    return 3 + 2 * channels


def augment_batch(x, y, u, settings: AugmentSettings):
    """Augment a batch: x (B, H, W, C) float32, y (B, H, W) uint8, u (B, param_count(C)) uniform in [0, 1)."""
    import tensorflow as tf

    channels = x.shape[-1]
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
    if settings.intensity > 0:
        gain = 1.0 + (2.0 * u[:, 3:3 + channels] - 1.0) * settings.intensity
        shift = (2.0 * u[:, 3 + channels:3 + 2 * channels] - 1.0) * settings.intensity
        jittered = x * gain[:, None, None, :] + shift[:, None, None, :]
        x = tf.where(tf.not_equal(x, 0.0), jittered, tf.zeros_like(x))
    return x, y


def _rotation_scaling(angle, scale, height, width):
    """(B, 8) projective transforms mapping each output pixel to its input position (rotation + scaling about
    the centre), in TensorFlow's (column, row) convention."""
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
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=tf.constant(0.0, tf.float32), interpolation=interpolation, fill_mode="CONSTANT")
