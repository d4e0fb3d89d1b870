"""Which training samples an epoch draws: whole slices or random patches, and how many centre on
tumour.

``data.sampling.foreground`` null (the study's way): every cached slice once per epoch, in a fresh
order. A share p in [0, 1]: an epoch draws as many samples as there are cached slices, at random
with replacement; a share p of them come from slices holding tumour and, with ``data.patch.size``,
are centred on a tumour pixel (a tumour class present in the slice is picked first, then one of its
pixels, so small classes are not crowded out); the rest come from any cached slice (with
``data.selection.rule=brain``: any brain slice), at a random position. nnU-Net oversamples
foreground this way with p = 1/3.

``data.patch.size=[H, W]``: each sample is an H x W window of its cached slice (the window is cut in
tf.data); the model is then built fully convolutional, so it predicts whole slices of any size its
divisor allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from brats_seg.data.settings import to_plain
from brats_seg.errors import ConfigError, DataError


@dataclass(frozen=True)
class SamplingSettings:
    foreground: float | None = None
    patch_size: tuple[int, int] | None = None

    @classmethod
    def from_data_cfg(cls, data_cfg: Any) -> SamplingSettings:
        cfg = to_plain(data_cfg) or {}
        share = (cfg.get("sampling") or {}).get("foreground")
        if share is not None and (
            not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 <= share <= 1
        ):
            raise ConfigError(
                f"data.sampling.foreground must be null or a share between 0 and 1, got {share!r}"
            )
        size = (cfg.get("patch") or {}).get("size")
        if size is not None:
            ok = (
                isinstance(size, (list, tuple))
                and len(size) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
            )
            if not ok:
                raise ConfigError(
                    "data.patch.size must be null or two positive whole numbers [H, W], "
                    f"got {size!r}"
                )
            size = (int(size[0]), int(size[1]))
        return cls(None if share is None else float(share), size)

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

    def windows(self, y: np.ndarray, centred: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(B, 2) int32 top-left corners of the patches of a batch of label slices y (B, H, W)."""
        height, width = self.settings.patch_size
        limits = np.array([y.shape[1] - height, y.shape[2] - width])
        corners = np.stack(
            [rng.integers(0, limits[0] + 1, len(y)), rng.integers(0, limits[1] + 1, len(y))], 1
        )
        for b in np.flatnonzero(centred):
            classes = np.unique(y[b])
            classes = classes[classes > 0]
            if len(classes) == 0:  # centred samples come from tumour slices; kept for safety
                continue
            pixels = np.argwhere(y[b] == rng.choice(classes))
            centre = pixels[rng.integers(0, len(pixels))]
            corners[b] = np.clip(centre - np.array([height // 2, width // 2]), 0, limits)
        return corners.astype(np.int32)


def _rows_with_tumour(prepared, case_id: str) -> np.ndarray:
    _, y = prepared.read_slices(case_id)
    y = np.asarray(y)
    return (y.reshape(len(y), -1) > 0).any(axis=1) if len(y) else np.zeros(0, dtype=bool)


def cut_windows(x, y, corners, size: tuple[int, int]):
    """TensorFlow: the ``size`` windows at ``corners`` (B, 2) of x (B, H, W, C) and y (B, H, W)."""
    import tensorflow as tf

    height, width = size
    rows = corners[:, 0:1] + tf.range(height, dtype=tf.int32)[None, :]
    cols = corners[:, 1:2] + tf.range(width, dtype=tf.int32)[None, :]
    x = tf.gather(tf.gather(x, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
    y = tf.gather(tf.gather(y, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
    return x, y
