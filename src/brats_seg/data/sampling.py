"""Which training samples an epoch draws: whole slices or random patches, and how many centre on
tumour.

``data.sampling.foreground`` null (the study's way): every cached slice once per epoch, in a fresh
order. A share p in [0, 1]: an epoch draws as many samples as there are cached slices, at random
with replacement; a share p of them come from slices holding tumour and, with ``data.patch.size``,
are centred on a tumour pixel (a tumour class present in the slice is picked first, then one of its
pixels, so small classes are not crowded out); the rest come from any cached slice (with
``data.selection.rule=brain``: any brain slice), at a random position. nnU-Net oversamples
foreground this way with p = 1/3.

``data.patch.size=[H, W]``: each sample is an H x W window of its cached slice, placed and cut in
tf.data after the spatial augmentation (flip, rotation, scaling), so a tumour-centred window is
centred on the tumour of the slice it is cut from; the model is then built fully convolutional, so
it predicts whole slices of any size its divisor allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from brats_seg.config_schema import to_plain
from brats_seg.errors import ConfigError, DataError


@dataclass(frozen=True)
class SamplingSettings:
    foreground: float | None = None
    patch_size: tuple[int, int] | None = None

    @classmethod
    def from_data_cfg(cls, data_cfg: Any) -> SamplingSettings:
        """From ``data.sampling`` and ``data.patch`` of a composed config (checked by their
        schemas; the patch size against the model by brats_seg.models.registry)."""
        cfg = to_plain(data_cfg)
        share, size = cfg["sampling"]["foreground"], cfg["patch"]["size"]
        return cls(
            None if share is None else float(share),
            None if size is None else (int(size[0]), int(size[1])),
        )

    @property
    def random(self) -> bool:
        return self.foreground is not None


def slice_index(prepared, case_ids: list[str]) -> np.ndarray:
    """(N, 2) int64 of (position in case_ids, row in that case's cache) for every selected slice."""
    counts = [len(prepared.case_meta(case_id)["selected"]) for case_id in case_ids]
    positions = np.repeat(np.arange(len(case_ids), dtype=np.int64), counts)
    rows = np.concatenate([np.arange(n, dtype=np.int64) for n in counts]) if counts else positions
    return np.stack([positions, rows], axis=1)


def epoch_order(n: int, shuffle: bool, seed: int, epoch: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits the n slices: a fresh seeded permutation each
    epoch."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


class SliceSampler:
    """The (case, row) pairs of each epoch, and the patch windows of each batch."""

    def __init__(
        self, prepared, case_ids: list[str], settings: SamplingSettings, shuffle: bool, seed: int
    ):
        self.settings = settings
        self.shuffle = shuffle
        self.seed = seed
        self.index = slice_index(prepared, case_ids)
        self.slice_shape = tuple(prepared.input_shape[:2])
        if settings.patch_size is not None:
            too_big = [p > s for p, s in zip(settings.patch_size, self.slice_shape, strict=True)]
            if any(too_big):
                raise ConfigError(
                    f"data.patch.size {list(settings.patch_size)} is larger than the cached slices "
                    f"({self.slice_shape[0]}x{self.slice_shape[1]})"
                )
        self.tumour_rows = np.zeros(0, dtype=np.int64)
        if settings.foreground:
            has_tumour = [_rows_with_tumour(prepared, case_id) for case_id in case_ids]
            self.tumour_rows = (
                np.flatnonzero(np.concatenate(has_tumour)) if has_tumour else self.tumour_rows
            )
            if len(self.tumour_rows) == 0:
                raise DataError(
                    f"data.sampling.foreground={settings.foreground}: no cached slice of "
                    f"{len(case_ids)} case(s) holds tumour"
                )

    def __len__(self) -> int:
        return len(self.index)

    def epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """The epoch's (N, 2) pairs and (N,) flags of the samples to centre on tumour."""
        n = len(self.index)
        if not self.settings.random:
            return self.index[epoch_order(n, self.shuffle, self.seed, epoch)], np.zeros(
                n, dtype=bool
            )
        rng = np.random.default_rng([self.seed, epoch, 2])
        centred = rng.random(n) < self.settings.foreground
        rows = rng.integers(0, n, size=n)
        rows[centred] = self.tumour_rows[
            rng.integers(0, len(self.tumour_rows), size=int(centred.sum()))
        ]
        return self.index[rows], centred

    def window_draws(self, centred: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(B, 5) float32 per sample of a batch: 1 if it is to be centred on tumour, else 0, then
        four uniform numbers in [0, 1) that ``place_windows`` turns into its patch position (row,
        column, tumour class, tumour pixel). The position itself is picked in TensorFlow after the
        spatial augmentation, on the labels the patch is cut from."""
        u = rng.random((len(centred), 4), dtype=np.float32)
        return np.concatenate([np.asarray(centred, np.float32)[:, None], u], axis=1)


def _rows_with_tumour(prepared, case_id: str) -> np.ndarray:
    _, y = prepared.read_slices(case_id)
    y = np.asarray(y)
    return (y.reshape(len(y), -1) > 0).any(axis=1) if len(y) else np.zeros(0, dtype=bool)


WINDOW_DRAWS = 5  # columns of SliceSampler.window_draws


def place_windows(y, draws, size: tuple[int, int], num_classes: int):
    """TensorFlow: (B, 2) int32 top-left corners of the ``size`` patches of label slices y (B, H,
    W), from ``draws`` (B, 5) of ``SliceSampler.window_draws``.

    A sample flagged centred is centred on a tumour pixel of y: one of the tumour classes present in
    its slice (each class equally likely, so small classes are not crowded out), then one of that
    class's pixels, the window clipped to the slice. y is the slice after the spatial augmentation,
    so the window holds tumour. Other samples, and a centred one whose tumour the augmentation moved
    out of the slice, get a uniformly random window.
    """
    import tensorflow as tf

    height, width = size
    batch, rows, cols = tf.shape(y)[0], tf.shape(y)[1], tf.shape(y)[2]
    limits = tf.stack([rows - height, cols - width])  # (2,)
    random = tf.minimum(
        tf.cast(tf.floor(draws[:, 1:3] * tf.cast(limits + 1, tf.float32)), tf.int32), limits
    )
    labels = tf.cast(y, tf.int32)
    classes = tf.range(1, num_classes, dtype=tf.int32)
    present = tf.reduce_any(labels[..., None] == classes, axis=[1, 2])  # (B, K - 1)
    n_present = tf.reduce_sum(tf.cast(present, tf.int32), axis=1)
    pick = tf.minimum(
        tf.cast(tf.floor(draws[:, 3] * tf.cast(n_present, tf.float32)), tf.int32),
        tf.maximum(n_present - 1, 0),
    )
    rank = tf.cumsum(tf.cast(present, tf.int32), axis=1) - 1
    chosen = tf.logical_and(present, rank == pick[:, None])
    label = tf.cast(tf.argmax(tf.cast(chosen, tf.int32), axis=1), tf.int32) + 1
    pixels = tf.cast(tf.reshape(labels == label[:, None, None], [batch, -1]), tf.int32)
    count = tf.reduce_sum(pixels, axis=1)
    target = tf.minimum(
        tf.cast(tf.floor(draws[:, 4] * tf.cast(count, tf.float32)), tf.int32),
        tf.maximum(count - 1, 0),
    )
    index = tf.argmax(
        tf.cast(tf.cumsum(pixels, axis=1) > target[:, None], tf.int32), axis=1, output_type=tf.int32
    )
    centre = tf.stack([index // cols, index % cols], axis=1)
    centred_corner = tf.clip_by_value(
        centre - tf.constant([height // 2, width // 2], tf.int32), 0, limits
    )
    use = tf.logical_and(draws[:, 0] > 0.5, n_present > 0)
    return tf.where(use[:, None], centred_corner, random)


def cut_windows(x, y, corners, size: tuple[int, int]):
    """TensorFlow: the ``size`` windows at ``corners`` (B, 2) of x (B, H, W, C) and y (B, H, W)."""
    import tensorflow as tf

    height, width = size
    rows = corners[:, 0:1] + tf.range(height, dtype=tf.int32)[None, :]
    cols = corners[:, 1:2] + tf.range(width, dtype=tf.int32)[None, :]
    x = tf.gather(tf.gather(x, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
    y = tf.gather(tf.gather(y, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
    return x, y
