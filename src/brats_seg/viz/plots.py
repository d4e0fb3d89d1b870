"""Figures of a run: learning curves, the pooled confusion matrix and image/truth/prediction
overlays."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from brats_seg.atomic import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(fig)


def read_history(path: str | Path) -> dict[str, list[float]]:
    """Columns of a Keras CSV log; a resumed run may repeat an epoch, the last row for it wins."""
    path = Path(path)
    if not path.exists():
        return {}
    rows: dict[int, dict[str, str]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row.get("epoch", "").strip().isdigit():
                rows[int(row["epoch"])] = row
    history: dict[str, list[float]] = {"epoch": sorted(rows)}
    for epoch in history["epoch"]:
        for key, value in rows[epoch].items():
            if key != "epoch":
                # Keras' CSVLogger writes NA for the val_ columns of a run without validation
                # patients.
                missing = value in ("", None, "NA")
                history.setdefault(key, []).append(float("nan") if missing else float(value))
    return history


def learning_curves(history_csv: str | Path, out: str | Path) -> bool:
    history = read_history(history_csv)
    if not history.get("epoch"):
        return False
    plt = _pyplot()
    epochs = [e + 1 for e in history["epoch"]]
    metrics = sorted(
        {k.removeprefix("val_") for k in history if k not in ("epoch", "learning_rate")}
    )
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.5), squeeze=False)
    for ax, name in zip(axes[0], metrics, strict=True):
        for key, style in ((name, "-o"), (f"val_{name}", "--s")):
            if key in history:
                ax.plot(epochs, history[key], style, label=key, markersize=3)
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.legend()
    _save(fig, Path(out))
    return True


def confusion_matrix(cm: np.ndarray, labels: list[str], out: str | Path) -> None:
    plt = _pyplot()
    cm = np.asarray(cm, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=30)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    for i in range(len(labels)):
        for j in range(len(labels)):
            colour = "white" if norm[i, j] > 0.5 else "black"
            ax.text(
                j,
                i,
                f"{norm[i, j]:.3f}\n{int(cm[i, j]):,}",
                ha="center",
                va="center",
                fontsize=7,
                color=colour,
            )
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title("pooled confusion matrix (row-normalised)")
    _save(fig, Path(out))


def label_rgb(image: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Windowed grey image with the class colours blended in, turned for display (anterior up)."""
    from brats_seg.viz.overlay import overlay_rgb, to_display

    return to_display(overlay_rgb(image, classes, alpha=0.45))


def overlay(
    image: np.ndarray, truth: np.ndarray | None, pred: np.ndarray, out: str | Path, title: str = ""
) -> None:
    """Three panels: the image, the truth and the prediction (truth omitted when unknown)."""
    plt = _pyplot()
    panels = [("image", label_rgb(image, np.zeros_like(pred)))]
    if truth is not None:
        panels.append(("truth", label_rgb(image, truth)))
    panels.append(("prediction", label_rgb(image, pred)))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    for ax, (name, rgb) in zip(np.atleast_1d(axes), panels, strict=True):
        ax.imshow(rgb)
        ax.set_title(name)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    _save(fig, Path(out))


def montage(
    image_slices: list[np.ndarray],
    pred_slices: list[np.ndarray],
    titles: list[str],
    out: str | Path,
) -> None:
    """A row of predicted overlays, e.g. the slices of one patient with the most tumour."""
    plt = _pyplot()
    n = len(image_slices)
    fig, axes = plt.subplots(1, n, figsize=(3 * n, 3.2), squeeze=False)
    for ax, image, pred, title in zip(axes[0], image_slices, pred_slices, titles, strict=False):
        ax.imshow(label_rgb(image, pred))
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    _save(fig, Path(out))
