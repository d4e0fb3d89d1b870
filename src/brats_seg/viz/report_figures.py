"""Figures of the sweep report (brats-seg report), each returned as PNG bytes to embed in the
page."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np

from brats_seg.viz.plots import _pyplot, label_rgb


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def _nan(v) -> float:
    return math.nan if v is None else float(v)


def grouped_bars(
    labels: Sequence[str],
    series: dict[str, tuple[list, list, list]],
    title: str,
    ylabel: str,
    interval_note: str,
) -> bytes:
    """Bars per label for each series ``name -> (values, lower, upper)``; NaN bounds draw no error
    bar."""
    plt = _pyplot()
    n = max(len(series), 1)
    width = 0.8 / n
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(labels) * n * 0.5 + 3), 3.8))
    for i, (name, (values, lower, upper)) in enumerate(series.items()):
        values = np.array([_nan(v) for v in values])
        low = np.array([_nan(v) for v in lower])
        high = np.array([_nan(v) for v in upper])
        err = np.vstack(
            [np.nan_to_num(values - low, nan=0.0), np.nan_to_num(high - values, nan=0.0)]
        )
        ax.bar(
            x + (i - (n - 1) / 2) * width,
            np.nan_to_num(values, nan=0.0),
            width,
            label=name,
            yerr=np.clip(err, 0, None),
            capsize=3,
        )
    ax.set_xticks(x, labels, rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}\n({interval_note})", fontsize=10)
    ax.legend(fontsize=8, ncol=min(n, 4), loc="upper right")
    return _png(fig)


def patient_boxes(labels: Sequence[str], per_region: dict[str, list[list[float]]]) -> bytes:
    """One panel per region: a box of per-patient Dice for each label (points drawn on top)."""
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, len(per_region), figsize=(4.2 * len(per_region), 3.6), squeeze=False
    )
    for ax, (region, groups) in zip(axes[0], per_region.items(), strict=True):
        data = [[v for v in g if v is not None and math.isfinite(v)] or [math.nan] for g in groups]
        ax.boxplot(data, showmeans=True)
        for i, values in enumerate(data, start=1):
            ax.plot(
                np.full(len(values), i) + np.linspace(-0.08, 0.08, len(values)),
                values,
                "k.",
                alpha=0.5,
            )
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=20, ha="right")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{region} Dice per test patient")
    return _png(fig)


def learning_curves_grid(panels: Sequence[tuple[str, list[dict[str, list[float]]]]]) -> bytes:
    """One panel per label: training and validation loss of each of its runs against the epoch."""
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, max(len(panels), 1), figsize=(4.2 * max(len(panels), 1), 3.4), squeeze=False
    )
    for ax, (label, histories) in zip(axes[0], panels, strict=False):  # one empty axis if none
        for i, history in enumerate(histories):
            epochs = [e + 1 for e in history.get("epoch", [])]
            if "loss" in history:
                ax.plot(
                    epochs,
                    history["loss"],
                    "-o",
                    color=f"C{i}",
                    markersize=3,
                    label=f"run {i + 1} loss",
                )
            if "val_loss" in history:
                ax.plot(
                    epochs,
                    history["val_loss"],
                    "--s",
                    color=f"C{i}",
                    markersize=3,
                    label=f"run {i + 1} val_loss",
                )
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=6)
    return _png(fig)


def overlay_row(
    title: str,
    truth_panel: tuple[np.ndarray, np.ndarray],
    predictions: Sequence[tuple[str, np.ndarray, np.ndarray]],
) -> bytes:
    """The truth on one slice, then each experiment's prediction of the same slice: (label, image,
    classes)."""
    plt = _pyplot()
    panels = [("truth", *truth_panel), *predictions]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.8 * len(panels), 3.2), squeeze=False)
    for ax, (name, image, classes) in zip(axes[0], panels, strict=True):
        ax.imshow(label_rgb(image, classes))
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def cost_scatter(
    labels: Sequence[str],
    dice: Sequence[float | None],
    costs: dict[str, tuple[Sequence[float | None], Sequence[bool]]],
) -> bytes:
    """One panel per cost (``name -> (seconds, on the Pareto front)``): each run's mean WT Dice
    against its seconds, the Pareto front ringed and joined. Runs without both values are left
    out."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(costs), figsize=(5.2 * len(costs), 4.0), squeeze=False)
    for ax, (name, (seconds, front)) in zip(axes[0], costs.items(), strict=True):
        points = [
            (float(s), float(d), label, on)
            for label, d, s, on in zip(labels, dice, seconds, front, strict=True)
            if d is not None and s is not None and math.isfinite(d) and math.isfinite(s)
        ]
        if not points:
            ax.text(0.5, 0.5, "no run records it", ha="center", va="center", transform=ax.transAxes)
        for s, d, label, on in points:
            ax.plot(s, d, "o", color="C3" if on else "C0", markersize=7 if on else 5)
            ax.annotate(label, (s, d), fontsize=7, xytext=(3, 3), textcoords="offset points")
        best = sorted((s, d) for s, d, _, on in points if on)
        if best:
            ax.step(
                *zip(*best, strict=True), where="post", color="C3", alpha=0.6, label="Pareto front"
            )
            ax.legend(fontsize=8, loc="lower right")
        ax.set_xlabel(name)
        ax.set_ylabel("mean WT Dice")
        ax.set_title(f"WT Dice against {name}", fontsize=10)
    return _png(fig)


def data_curve(points: Sequence[dict]) -> bytes:
    """Mean WT, TC and ET Dice over held-out patients against the number of training patients,
    with the 95% interval over draws shaded where there are two draws or more."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    ns = [p["train_patients"] for p in points]
    for i, region in enumerate(("WT", "TC", "ET")):
        stats = [p[f"{region}_dice"] for p in points]
        ax.plot(ns, [_nan(s["mean"]) for s in stats], "o-", color=f"C{i}", label=region)
        ax.fill_between(
            ns,
            [_nan(s["low"]) for s in stats],
            [_nan(s["high"]) for s in stats],
            color=f"C{i}",
            alpha=0.15,
        )
    ax.set_xticks(ns)
    ax.set_xlabel("training patients")
    ax.set_ylabel("mean Dice of the held-out patients")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Quality against the number of training patients", fontsize=10)
    return _png(fig)
