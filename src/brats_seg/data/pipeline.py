"""tf.data input pipeline over the slice cache (TensorFlow: imported only by training).

A Python generator walks the epoch's (case, slice) pairs (see sampling.py: every selected slice once
in a seeded per-epoch order, or random draws with a share centred on tumour) and reads each batch
from the cache files with ``os.pread``, so memory stays flat whatever the split's size. The
generator yields whole batches (one Python call per batch, not per slice) with their random numbers;
spatial augmentation, patch windows, appearance augmentation, padding, one-hot encoding and
prefetching run in TensorFlow.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from brats_seg.data.cache import SliceReader
from brats_seg.data.dataset import PreparedData
from brats_seg.data.sampling import (
    WINDOW_DRAWS,
    SamplingSettings,
    SliceSampler,
    cut_windows,
    epoch_order,
    place_windows,
    slice_index,
)
from brats_seg.errors import DataError

__all__ = ["batch_generator", "epoch_order", "make_dataset", "slice_index"]

# Batches being prepared at once (one per CPU, at most 8: each holds a whole batch in memory), and
# batches waiting for the model. Set, not autotuned: see make_dataset.
PARALLEL_BATCHES = max(1, min(8, os.cpu_count() or 1))
PREFETCH_BATCHES = 2


def batch_generator(
    prepared: PreparedData,
    case_ids: list[str],
    batch_size: int,
    shuffle: bool,
    seed: int,
    augment_params: int = 0,
    sampling: SamplingSettings | None = None,
) -> Any:
    """A callable for ``Dataset.from_generator``; every call runs the next epoch.

    Yields ``(x, y[, u][, w])``: u the augmentation's uniform numbers, w the patch windows' draws
    (``SliceSampler.window_draws``; the windows are placed after the spatial augmentation).
    """
    sampler = SliceSampler(prepared, case_ids, sampling or SamplingSettings(), shuffle, seed)
    reader = SliceReader(prepared.cache_dir, case_ids)
    epochs = itertools.count()

    def run_epoch() -> Iterator[tuple[np.ndarray, ...]]:
        epoch = next(epochs)
        pairs, centred = sampler.epoch(epoch)
        draws = np.random.default_rng([seed, epoch, 1])
        windows = np.random.default_rng([seed, epoch, 3])
        for start in range(0, len(pairs), batch_size):
            x, y = reader.read(pairs[start : start + batch_size])
            batch: tuple[np.ndarray, ...] = (x, y)
            if augment_params:
                batch += (draws.random((len(x), augment_params), dtype=np.float32),)
            if sampler.settings.patch_size is not None:
                batch += (sampler.window_draws(centred[start : start + batch_size], windows),)
            yield batch

    return run_epoch


def make_dataset(
    prepared: PreparedData,
    case_ids: list[str],
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    augment_cfg: Any = None,
    repeat: bool = False,
    split_name: str | None = None,
    sampling: SamplingSettings | None = None,
    pad_multiple: int = 1,
):
    """Batches ``(x float32 (B, H, W, C), y float32 one-hot (B, H, W, 4))`` of the selected slices
    of ``case_ids``.

    Without ``repeat`` one pass is one epoch (the last batch may be smaller); with the default
    sampling every selected slice appears exactly once per pass, and each new pass reshuffles with a
    permutation derived from ``seed`` and the pass number. ``sampling`` may cut patches and draw
    samples at random (see sampling.py). ``pad_multiple`` pads whole slices at the bottom and right
    with background up to a multiple of it (for a fully convolutional model whose divisor does not
    divide the cached size).
    """
    import tensorflow as tf

    from brats_seg.data import augment

    case_ids = list(case_ids)
    sampling = sampling or SamplingSettings()
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if prepared.slice_count(case_ids) == 0:
        which = f"the {split_name} split" if split_name else "the requested cases"
        raise DataError(
            f"no slices selected in {which} ({len(case_ids)} case(s)) "
            f"with {prepared.selection.describe()}; "
            "loosen the selection (a lower data.selection.threshold, or data.selection.rule=tumour)"
        )
    height, width, channels = prepared.input_shape
    base_channels = prepared.preprocess.base_channels
    if channels % base_channels:  # a cache whose channels the settings do not explain
        base_channels = channels
    # augment_cfg None: no augmentation (evaluation, validation)
    settings = None if augment_cfg is None else augment.AugmentSettings.from_cfg(augment_cfg)
    enabled = settings is not None and settings.enabled
    n_params = augment.param_count(base_channels, settings) if enabled else 0
    signature = (
        tf.TensorSpec((None, height, width, channels), tf.float32),
        tf.TensorSpec((None, height, width), tf.uint8),
    )
    if n_params:
        signature += (tf.TensorSpec((None, n_params), tf.float32),)
    patch = sampling.patch_size
    if patch is not None:
        signature += (tf.TensorSpec((None, WINDOW_DRAWS), tf.float32),)
    generator = batch_generator(prepared, case_ids, batch_size, shuffle, seed, n_params, sampling)
    ds = tf.data.Dataset.from_generator(generator, output_signature=signature)
    if repeat:
        ds = ds.repeat()
    else:
        # from_generator cannot know its length; telling Keras gives a real progress bar from the
        # first epoch.
        n_batches = -(-prepared.slice_count(case_ids) // batch_size)
        ds = ds.apply(tf.data.experimental.assert_cardinality(n_batches))

    def transform(*batch):
        x, y = batch[0], batch[1]
        u = batch[2] if n_params else None
        if u is not None:
            x, y = augment.spatial(x, y, u, settings)
        if patch is not None:  # placed on the augmented labels: a centred window holds tumour
            corners = place_windows(y, batch[-1], patch, prepared.num_classes)
            x, y = cut_windows(x, y, corners, patch)
        if u is not None:
            x = augment.appearance(x, u, settings, base_channels, y)
        return x, y

    if n_params or patch is not None:
        ds = ds.map(transform, num_parallel_calls=PARALLEL_BATCHES)
    if patch is None and pad_multiple > 1 and (height % pad_multiple or width % pad_multiple):
        pad_h, pad_w = -height % pad_multiple, -width % pad_multiple
        ds = ds.map(
            lambda x, y: (
                tf.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]]),
                tf.pad(y, [[0, 0], [0, pad_h], [0, pad_w]]),
            )
        )
    num_classes = prepared.num_classes
    ds = ds.map(
        lambda x, y: (x, tf.one_hot(tf.cast(y, tf.int32), num_classes, dtype=tf.float32)),
        num_parallel_calls=PARALLEL_BATCHES,
    )
    # tf.data's autotuner runs an optimisation loop that sleeps 10 ms, then twice as long each time
    # (up to a minute), and destroying an iterator waits for that sleep to end. Keras destroys one
    # at the end of every fit call and of every pass over a finite data set, so with the autotuner
    # a fit call lasted 10 ms x 2^k (20.48 s for 4 steps of the study's U-Net that computed for 13
    # s) and the CPUs idled meanwhile. The parallelism and the prefetch are fixed instead.
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(PREFETCH_BATCHES).with_options(options)
