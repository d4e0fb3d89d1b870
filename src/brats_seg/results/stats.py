"""Small statistics over per-patient scores: mean and sd, bootstrap intervals, the paired Wilcoxon
test."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

BOOTSTRAP_SAMPLES = 10000
SIGNIFICANCE = 0.05


def mean_sd(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample sd (ddof 1; NaN for one value) and n of the finite values."""
    finite = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if finite.size == 0:
        return math.nan, math.nan, 0
    sd = float(np.std(finite, ddof=1)) if finite.size > 1 else math.nan
    return float(np.mean(finite)), sd, int(finite.size)


def bootstrap_mean_ci(
    values: Sequence[float], samples: int = BOOTSTRAP_SAMPLES, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: resample the values with replacement ``samples``
    times.

    NaN values are dropped first; fewer than two values give (NaN, NaN).
    """
    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if data.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    chunk = max(1, 2_000_000 // data.size)  # bounded memory for long lists
    for start in range(0, samples, chunk):
        stop = min(start + chunk, samples)
        picks = rng.integers(0, data.size, size=(stop - start, data.size))
        means[start:stop] = data[picks].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def wilcoxon_p(differences: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p of paired differences (scipy.stats.wilcoxon); NaN when all
    are zero or there are none."""
    from scipy.stats import wilcoxon

    diffs = np.asarray(differences, dtype=np.float64)
    if diffs.size == 0 or not np.any(diffs != 0):
        return math.nan
    return float(wilcoxon(diffs, alternative="two-sided").pvalue)


def smallest_wilcoxon_p(differences: Sequence[float]) -> float:
    """The smallest p ``wilcoxon_p`` can give for differences of these sizes: every non-zero
    difference of one sign. The test drops zero differences (scipy's default ``zero_method``), so
    six pairs with one zero difference are five and give at best 2 / 2**5 = 0.0625. NaN when no
    difference is non-zero."""
    return wilcoxon_p(np.abs(np.asarray(differences, dtype=np.float64)))


def nonzero_count(differences: Sequence[float]) -> int:
    """How many paired differences the Wilcoxon signed-rank test uses: the non-zero ones."""
    return int(np.count_nonzero(np.asarray(differences, dtype=np.float64)))


def fmt_mean_sd(mean: float, sd: float, n: int, digits: int = 4) -> str:
    if n == 0 or math.isnan(mean):
        return ""
    if n == 1 or math.isnan(sd):
        return f"{mean:.{digits}f} (n=1)"
    return f"{mean:.{digits}f} ± {sd:.{digits}f} (n={n})"


def fmt_interval(low: float, high: float, digits: int = 4) -> str:
    if math.isnan(low) or math.isnan(high):
        return ""
    return f"[{low:.{digits}f}, {high:.{digits}f}]"
