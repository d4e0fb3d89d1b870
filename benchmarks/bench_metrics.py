"""Benchmark the numpy evaluation metrics and fail when they are too slow.

    python benchmarks/bench_metrics.py         # the study's test set: 1302 slices of 240x240
    python benchmarks/bench_metrics.py --tiny  # small arrays, quick (floors reported, not enforced)

Pooled confusion matrix: pixels per second over ``--slices`` argmax slices (floor 150 million/s,
best of the repeats). HD95: seconds per WT/TC/ET region of a synthetic tumour made of a few blobs
in a 240x240x155 volume against a shifted, noisy prediction with a stray false-positive blob (floor
1 s per region, best of the repeats). Exit status 1 when a floor is missed.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from brats_seg.metrics import REGIONS, confusion_matrix, hd95, region_scores

CM_FLOOR = 150e6  # pixels per second
HD95_CEILING = 1.0  # seconds per region


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def label_slices(
    n_slices: int, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Truth with BraTS-like class proportions and a prediction that agrees on ~90% of pixels."""
    u = rng.integers(0, 100, size=(n_slices, size, size), dtype=np.uint8)
    truth = (u >= 90).astype(np.uint8) + (u >= 93) + (u >= 98)
    noise = rng.integers(0, 4, size=truth.shape, dtype=np.uint8)
    pred = np.where(rng.integers(0, 10, size=truth.shape, dtype=np.uint8) == 0, noise, truth)
    return truth, pred


def ellipsoid(shape: tuple[int, int, int], centre, radii) -> np.ndarray:
    x, y, z = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + (
        (z - centre[2]) / radii[2]
    ) ** 2 <= 1


def tumour_volumes(
    shape: tuple[int, int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic tumour and a prediction of it.

    Reference: edema from three overlapping blobs, a core blob with a necrotic centre and an ET rim.
    Prediction: the reference shifted by (2, -1, 1) voxels, with boundary noise and one stray ET
    blob.
    """
    sx, sy, sz = shape
    c = (sx * 0.45, sy * 0.55, sz * 0.5)
    lobe_a = (
        (c[0] + sx * 0.07, c[1] - sy * 0.05, c[2] + sz * 0.05),
        (sx * 0.08, sy * 0.09, sz * 0.1),
    )
    lobe_b = (
        (c[0] - sx * 0.06, c[1] + sy * 0.08, c[2] - sz * 0.06),
        (sx * 0.07, sy * 0.06, sz * 0.08),
    )
    edema = (
        ellipsoid(shape, c, (sx * 0.12, sy * 0.10, sz * 0.13))
        | ellipsoid(shape, *lobe_a)
        | ellipsoid(shape, *lobe_b)
    )
    core = ellipsoid(shape, c, (sx * 0.06, sy * 0.055, sz * 0.07))
    necrosis = ellipsoid(shape, c, (sx * 0.035, sy * 0.03, sz * 0.04))
    ref = np.zeros(shape, dtype=np.uint8)
    ref[edema] = 2
    ref[core] = 3
    ref[necrosis] = 1
    pred = np.roll(ref, (2, -1, 1), axis=(0, 1, 2))
    boundary = (pred > 0) & (rng.random(shape) < 0.02)
    pred[boundary] = 0
    pred[ellipsoid(shape, (sx * 0.2, sy * 0.25, sz * 0.7), (4, 4, 3))] = 3
    return pred, ref


def bench_confusion(
    n_slices: int, size: int, repeats: int, rng: np.random.Generator
) -> tuple[bool, list[str]]:
    truth, pred = label_slices(n_slices, size, rng)
    times = timed(lambda: confusion_matrix(truth, pred), repeats)
    pixels = truth.size
    best, median = pixels / min(times), pixels / statistics.median(times)
    ok = best >= CM_FLOOR
    rows = [
        f"confusion matrix  {n_slices} x {size} x {size} = {pixels / 1e6:.1f} M px   "
        f"best {best / 1e6:7.1f} M px/s   median {median / 1e6:7.1f} M px/s   "
        f"floor {CM_FLOOR / 1e6:.0f}   {'ok' if ok else 'TOO SLOW'}"
    ]
    return ok, rows


def bench_hd95(
    shape: tuple[int, int, int], repeats: int, rng: np.random.Generator
) -> tuple[bool, list[str]]:
    pred, ref = tumour_volumes(shape, rng)
    ok, rows = True, []
    for region, labels in REGIONS.items():
        pred_mask, ref_mask = np.isin(pred, labels), np.isin(ref, labels)
        value = hd95(pred_mask, ref_mask)
        times = timed(functools.partial(hd95, pred_mask, ref_mask), repeats)
        region_ok = min(times) < HD95_CEILING
        ok &= region_ok
        rows.append(
            f"hd95 {region:<3} {'x'.join(map(str, shape))}  ref {ref_mask.sum():>7} vox  "
            f"hd95 {value:6.2f} mm   best {min(times) * 1e3:7.1f} ms   "
            f"median {statistics.median(times) * 1e3:7.1f} ms   {'ok' if region_ok else 'TOO SLOW'}"
        )
    per_volume = timed(lambda: region_scores(pred, ref), repeats)
    rows.append(
        f"region_scores (WT/TC/ET Dice + HD95) per volume: best {min(per_volume) * 1e3:.1f} ms, "
        f"median {statistics.median(per_volume) * 1e3:.1f} ms"
    )
    return ok, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small arrays, quick run")
    parser.add_argument(
        "--repeats", type=int, default=None, help="timing repeats (default 5, tiny 3)"
    )
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.tiny else 5)
    n_slices, shape = (100, (120, 120, 80)) if args.tiny else (1302, (240, 240, 155))
    rng = np.random.default_rng(0)

    cm_ok, cm_rows = bench_confusion(n_slices, 240, repeats, rng)
    hd_ok, hd_rows = bench_hd95(shape, repeats, rng)
    print("\n".join(cm_rows + hd_rows))
    if not (cm_ok and hd_ok):
        if args.tiny:  # a quick check that the script runs; speed is judged at full size only
            print("bench_metrics: a floor was missed (reported, not enforced with --tiny)")
            return 0
        print("bench_metrics: a floor was missed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
