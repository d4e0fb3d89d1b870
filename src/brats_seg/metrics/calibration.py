"""Expected calibration error (ECE) and the reliability table behind it.

Each voxel counts once with its top-class confidence (the largest softmax probability) and whether
that class is the true one. The confidences are put into ``ECE_BINS`` equal-width bins over [0, 1]
(the first bin closed at 0, every other one open below and closed above);
``ECE = sum_b (n_b / N) * |accuracy_b - confidence_b|``, where ``n_b`` voxels fall into bin ``b``,
``accuracy_b`` is the share of them whose top class is right and ``confidence_b`` their mean
confidence. Only the voxels the caller passes count: evaluation passes those inside the brain,
since the background around it is predicted with certainty and would swamp the table.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Equal-width confidence bins, as Guo et al. (2017) report the ECE.
ECE_BINS = 15


class ReliabilityTable:
    """Counts, summed confidences and right answers per confidence bin, added to case by case."""

    def __init__(self, bins: int = ECE_BINS):
        self.edges = np.linspace(0.0, 1.0, bins + 1)
        self.count = np.zeros(bins, dtype=np.int64)
        self.confidence = np.zeros(bins, dtype=np.float64)
        self.correct = np.zeros(bins, dtype=np.int64)

    def add(self, probs: np.ndarray, truth: np.ndarray) -> None:
        """``probs`` (N, K) softmax probabilities and ``truth`` (N,) class indices of N voxels."""
        probs = np.asarray(probs)
        truth = np.asarray(truth).reshape(-1)
        if probs.ndim != 2 or len(probs) != len(truth):
            raise ValueError(f"probabilities {probs.shape} do not match {len(truth)} true classes")
        top = probs.argmax(axis=1)
        conf = probs[np.arange(len(probs)), top].astype(np.float64)
        # Bin b holds (edges[b], edges[b+1]]; a confidence of exactly 0 goes to the first bin.
        b = np.clip(np.searchsorted(self.edges, conf, side="left") - 1, 0, len(self.count) - 1)
        bins = len(self.count)
        self.count += np.bincount(b, minlength=bins)
        self.confidence += np.bincount(b, weights=conf, minlength=bins)
        self.correct += np.bincount(b, weights=(top == truth), minlength=bins).astype(np.int64)

    @property
    def voxels(self) -> int:
        return int(self.count.sum())

    def ece(self) -> float:
        """The expected calibration error; NaN when no voxel was added."""
        n = self.voxels
        if n == 0:
            return float("nan")
        filled = self.count > 0
        gap = np.abs(
            self.correct[filled] / self.count[filled] - self.confidence[filled] / self.count[filled]
        )
        return float(np.sum(self.count[filled] / n * gap))

    def as_dict(self) -> dict[str, Any]:
        """The table for metrics.json: per bin its voxels, mean confidence and accuracy (null when
        empty)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_conf = self.confidence / self.count
            accuracy = self.correct / self.count
        return {
            "ece": self.ece(),
            "voxels": self.voxels,
            "bin_edges": [round(float(e), 6) for e in self.edges],
            "bin_voxels": self.count.tolist(),
            "bin_confidence": _per_filled_bin(self.count, mean_conf),
            "bin_accuracy": _per_filled_bin(self.count, accuracy),
        }


def _per_filled_bin(count: np.ndarray, values: np.ndarray) -> list[float | None]:
    return [None if n == 0 else float(v) for n, v in zip(count, values, strict=True)]


def expected_calibration_error(probs: np.ndarray, truth: np.ndarray, bins: int = ECE_BINS) -> float:
    """The ECE of ``probs`` (N, K) against ``truth`` (N,) in one call."""
    table = ReliabilityTable(bins)
    table.add(probs, truth)
    return table.ece()


def calibration_markdown(metrics: dict[str, Any]) -> list[str]:
    """The lines of metrics.md on calibration (none for a run that was not calibrated)."""
    calibration = metrics.get("calibration")
    if not calibration or "ece_before" not in calibration:
        return []
    return [
        "",
        (
            f"Calibration: temperature {calibration['temperature']:.4f} (fitted on the validation "
            f"patients); ECE of the test patients' brain voxels {calibration['ece_before']:.4f} "
            f"before, {calibration['ece_after']:.4f} after ({ECE_BINS} equal-width bins)."
        ),
    ]
