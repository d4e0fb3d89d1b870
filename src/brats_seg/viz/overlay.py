"""Image/label overlays and montages as PNG (matplotlib's Agg canvas, no pyplot state, imported
lazily).

Slices are indexed as BraTS stores them: ``vol[:, :, z]`` has rows along array axis X (towards the
patient's left) and columns along Y (towards posterior). ``to_display`` turns such a slice so that
anterior is up and the patient's left is on the image's right (the radiological view); overlay_rgb
itself never reorients.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from brats_seg.data.labels import CLASS_NAMES

# Class colours (RGB in [0, 1]): background none, necrosis red, edema green, enhancing tumour
# yellow.
_COLOURS = ((0.0, 0.0, 0.0), (1.0, 0.2, 0.2), (0.2, 0.9, 0.2), (1.0, 0.9, 0.1))


def label_colours() -> np.ndarray:
    """(4, 3) float RGB colour of each class 0..3 (row 0, background, is never painted)."""
    return np.array(_COLOURS, dtype=np.float64)


def to_display(slice2d: np.ndarray) -> np.ndarray:
    """Swap the first two axes of an (X, Y[, ...]) slice: anterior up, patient's left on the
    right."""
    return np.swapaxes(np.asarray(slice2d), 0, 1)


def grey(image2d: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.0)) -> np.ndarray:
    """An image windowed to [0, 1] by percentiles of its non-zero pixels (background stays
    black)."""
    image = np.asarray(image2d, dtype=np.float64)
    inside = image != 0
    if not inside.any():
        return np.zeros(image.shape)
    lo, hi = np.percentile(image[inside], percentiles)
    out = np.clip((image - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    out[~inside] = 0.0
    return out


def overlay_rgb(image2d: np.ndarray, classes2d: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) float in [0, 1]: the windowed grey image with each tumour class blended in its
    colour."""
    classes = np.asarray(classes2d)
    image = np.asarray(image2d)
    if image.shape != classes.shape:
        raise ValueError(f"image {image.shape} and classes {classes.shape} differ in shape")
    rgb = np.repeat(grey(image)[..., None], 3, axis=-1)
    painted = classes > 0
    colours = label_colours()
    rgb[painted] = (1 - alpha) * rgb[painted] + alpha * colours[
        np.clip(classes[painted], 0, len(colours) - 1)
    ]
    return rgb


def new_figure(width_in: float, height_in: float):
    """A matplotlib Figure on an Agg canvas (safe in any thread or process, no GUI backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in))
    FigureCanvasAgg(fig)
    return fig


def save_png(fig, path: str | os.PathLike, dpi: int = 90) -> Path:
    """Write ``fig`` as PNG atomically (a reader never sees half a file)."""
    from brats_seg.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, facecolor="white")
    return path


def class_legend(fig) -> None:
    """A one-line legend of the tumour class colours at the bottom of ``fig``."""
    from matplotlib.patches import Patch

    pairs = zip(label_colours()[1:], CLASS_NAMES[1:], strict=True)
    handles = [Patch(color=c, label=n) for c, n in pairs]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=8)


def save_montage(
    path: str | os.PathLike,
    panels: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    title: str = "",
    panel_inches: float = 2.0,
    legend: bool = True,
    dpi: int = 90,
) -> Path:
    """Tile images (H x W grey or H x W x 3 RGB, already in display orientation) into a grid and
    save a PNG."""
    if not panels:
        raise ValueError("a montage needs at least one panel")
    ncols = max(1, min(ncols or int(np.ceil(np.sqrt(len(panels)))), len(panels)))
    nrows = int(np.ceil(len(panels) / ncols))
    extra = (0.4 if title else 0.0) + (0.3 if legend else 0.0)
    fig = new_figure(panel_inches * ncols, panel_inches * nrows + extra)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= len(panels):
            continue
        panel = np.asarray(panels[i])
        ax.imshow(
            panel, cmap="gray" if panel.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest"
        )
        if titles:
            ax.set_title(titles[i], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    if legend:
        class_legend(fig)
    fig.tight_layout(rect=(0, 0.3 / (panel_inches * nrows + extra) if legend else 0, 1, 1))
    return save_png(fig, path, dpi=dpi)


def save_gif(
    path: str | os.PathLike,
    frames: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    fps: int = 8,
    inches: float = 3.0,
    dpi: int = 80,
) -> Path:
    """An animated GIF of RGB frames (display orientation) through matplotlib's PillowWriter.

    Written directly to ``path`` (Pillow picks the format from the suffix): call it inside a folder
    that is renamed into place afterwards when atomicity matters.
    """
    from matplotlib.animation import PillowWriter

    if not frames:
        raise ValueError("a GIF needs at least one frame")
    fig = new_figure(inches, inches + 0.3)
    ax = fig.add_axes((0, 0, 1, inches / (inches + 0.3)))
    ax.set_axis_off()
    shown = ax.imshow(frames[0], vmin=0, vmax=1, interpolation="nearest")
    label = fig.text(0.5, 1 - 0.15 / (inches + 0.3), "", ha="center", va="center", fontsize=8)
    writer = PillowWriter(fps=fps)
    with writer.saving(fig, str(path), dpi):
        for i, frame in enumerate(frames):
            shown.set_data(frame)
            label.set_text(titles[i] if titles else "")
            writer.grab_frame(facecolor="white")
    return Path(path)
