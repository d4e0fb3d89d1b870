"""Seconds per case, split into phases (reading, model, post-processing, scoring, writing), for
the ``cost`` block of metrics.json."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class CaseTimer:
    """Wall seconds of each case and of the named phases inside it (``time.perf_counter``).

    A case's ``seconds`` is its whole wall time, so it also holds what no phase names (logging,
    picking overlay slices).
    """

    def __init__(self) -> None:
        self.cases: list[dict[str, Any]] = []
        self._phases: dict[str, float] | None = None

    @contextmanager
    def case(self, case_id: str) -> Iterator[None]:
        self._phases = {}
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            self.cases.append({"case": case_id, "seconds": seconds, "phases": self._phases})
            self._phases = None

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            if self._phases is not None:
                self._phases[name] = self._phases.get(name, 0.0) + time.perf_counter() - start

    def record(self, device: str) -> dict[str, Any]:
        """The ``cost`` block: the device, the mean seconds per case, the mean seconds of each
        phase per case, and every case's seconds."""
        n = len(self.cases)
        names = sorted({name for c in self.cases for name in c["phases"]})
        return {
            "device": device,
            "cases": n,
            "seconds_per_case": round(sum(c["seconds"] for c in self.cases) / n, 4) if n else None,
            "phase_seconds_per_case": {
                name: round(sum(c["phases"].get(name, 0.0) for c in self.cases) / n, 4)
                for name in names
            },
            "per_case": [
                {
                    "case": c["case"],
                    "seconds": round(c["seconds"], 4),
                    **{name: round(s, 4) for name, s in c["phases"].items()},
                }
                for c in self.cases
            ],
        }
