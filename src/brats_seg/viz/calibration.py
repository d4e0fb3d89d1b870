"""The reliability diagram of a calibrated run: accuracy against confidence per bin, before and
after tempering, above the voxel count of each bin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from brats_seg.viz.plots import _pyplot, _save


def reliability_diagram(calibration: dict[str, Any], out: str | Path) -> None:
    """Draw ``calibration`` (metrics.json's ``calibration`` node: the tables ``before`` and
    ``after`` and the ``temperature``) into ``out``."""
    plt = _pyplot()
    fig, (ax, counts) = plt.subplots(
        2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    edges = np.asarray(calibration["before"]["bin_edges"])
    centres = (edges[:-1] + edges[1:]) / 2
    width = float(edges[1] - edges[0])
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    temperature = calibration["temperature"]
    for key, label, style in (
        ("before", "before", "-o"),
        ("after", f"after, T = {temperature:.3f}", "-s"),
    ):
        table = calibration[key]
        filled = [i for i, a in enumerate(table["bin_accuracy"]) if a is not None]
        ax.plot(
            [table["bin_confidence"][i] for i in filled],
            [table["bin_accuracy"][i] for i in filled],
            style,
            markersize=4,
            label=f"{label} (ECE {table['ece']:.4f})",
        )
        counts.bar(
            centres,
            table["bin_voxels"],
            width=width * 0.45,
            align="edge" if key == "after" else "center",
            label=key,
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (top class right)")
    ax.set_title("reliability of the test patients' brain voxels")
    ax.legend(loc="upper left", fontsize=8)
    counts.set_yscale("log")
    counts.set_xlabel("top-class confidence")
    counts.set_ylabel("voxels")
    _save(fig, Path(out))
