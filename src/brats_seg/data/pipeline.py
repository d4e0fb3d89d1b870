"""tf.data input pipeline over the slice cache (TensorFlow: imported only by training).

A Python generator walks a (per-epoch, seeded) permutation of every selected (case, slice) pair and reads each
batch from the cache files with ``os.pread``, so memory stays flat whatever the split's size. The generator
yields whole batches (one Python call per batch, not per slice); one-hot encoding, optional augmentation and
prefetching run in TensorFlow.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterator

import numpy as np

from brats_seg.data.cache import SliceReader
from brats_seg.data.dataset import PreparedData
from brats_seg.errors import DataError


def slice_index(prepared: PreparedData, case_ids: list[str]) -> np.ndarray:
    """(N, 2) int64 of (position in case_ids, row in that case's cache) for every selected slice."""
    counts = [len(prepared.case_meta(case_id)["selected"]) for case_id in case_ids]
    positions = np.repeat(np.arange(len(case_ids), dtype=np.int64), counts)
    rows = np.concatenate([np.arange(n, dtype=np.int64) for n in counts]) if counts else positions
    return np.stack([positions, rows], axis=1)


def epoch_order(n: int, shuffle: bool, seed: int, epoch: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits the n slices: a fresh seeded permutation each epoch."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_generator(prepared: PreparedData, case_ids: list[str], batch_size: int, shuffle: bool, seed: int,
                    augment_params: int = 0) -> Any:
    """A callable for ``Dataset.from_generator``; every call runs the next epoch."""
    index = slice_index(prepared, case_ids)
    reader = SliceReader(prepared.cache_dir, case_ids)
    epochs = itertools.count()

    def run_epoch() -> Iterator[tuple[np.ndarray, ...]]:
        epoch = next(epochs)
        order = epoch_order(len(index), shuffle, seed, epoch)
        draws = np.random.default_rng([seed, epoch, 1])
        for start in range(0, len(order), batch_size):
            x, y = reader.read(index[order[start:start + batch_size]])
            if augment_params:
                yield x, y, draws.random((len(x), augment_params), dtype=np.float32)
            else:
                yield x, y

    return run_epoch


def make_dataset(prepared: PreparedData, case_ids: list[str], batch_size: int, *, shuffle: bool, seed: int,
                 augment_cfg: Any = None, repeat: bool = False, split_name: str | None = None):
    """Batches ``(x float32 (B, H, W, C), y float32 one-hot (B, H, W, 4))`` of the selected slices of ``case_ids``.

    Without ``repeat`` one pass is one epoch (the last batch may be smaller) and every selected slice appears
    exactly once; each new pass reshuffles with a permutation derived from ``seed`` and the pass number.
    """
    import tensorflow as tf

    from brats_seg.data import augment

    case_ids = list(case_ids)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if prepared.slice_count(case_ids) == 0:
        which = f"the {split_name} split" if split_name else "the requested cases"
        raise DataError(f"no slices selected in {which} ({len(case_ids)} case(s)) with {prepared.selection.describe()};"
                        f" loosen the selection (a lower data.selection.threshold, or data.selection.rule=tumour)")
    height, width, channels = prepared.input_shape
    settings = augment.AugmentSettings.from_cfg(augment_cfg)
    n_params = augment.param_count(channels) if settings.enabled else 0
    signature = (tf.TensorSpec((None, height, width, channels), tf.float32),
                 tf.TensorSpec((None, height, width), tf.uint8))
    if n_params:
        signature += (tf.TensorSpec((None, n_params), tf.float32),)
    generator = batch_generator(prepared, case_ids, batch_size, shuffle, seed, n_params)
    ds = tf.data.Dataset.from_generator(generator, output_signature=signature)
    if repeat:
        ds = ds.repeat()
    else:
        # from_generator cannot know its length; telling Keras gives a real progress bar from the first epoch.
        n_batches = -(-prepared.slice_count(case_ids) // batch_size)
        ds = ds.apply(tf.data.experimental.assert_cardinality(n_batches))
    if n_params:
        ds = ds.map(lambda x, y, u: augment.augment_batch(x, y, u, settings), num_parallel_calls=tf.data.AUTOTUNE)
    num_classes = prepared.num_classes
    ds = ds.map(lambda x, y: (x, tf.one_hot(tf.cast(y, tf.int32), num_classes, dtype=tf.float32)),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
