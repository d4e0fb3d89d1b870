"""The Pareto front of runs in (Dice, seconds): what no other run beats on both."""

from __future__ import annotations

import math
from collections.abc import Sequence


def pareto_front(points: Sequence[tuple[float | None, float | None]]) -> list[bool]:
    """For each ``(dice, seconds)``: True when no other point has a Dice at least as high and
    seconds at most as low, and is better in one of them. A point with a missing or non-finite
    value is never on the front (and dominates nothing); equal points are both on it."""

    def known(p) -> bool:
        return all(v is not None and math.isfinite(v) for v in p)

    def dominates(a, b) -> bool:
        return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])

    valid = [p for p in points if known(p)]
    return [known(p) and not any(dominates(q, p) for q in valid) for p in points]
