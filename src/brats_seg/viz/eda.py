"""Exploratory statistics of a prepared data set, over the slices selected for training (as the
study did).

``run_eda`` writes a report folder: ``eda.json`` (pixels per class, slices lacking each class,
per-slice area histograms, per-case counts, each case's edema contrast) and PNG figures (class
totals, area histograms, random image/label overlays, a montage of one volume, optionally a GIF).
The folder is built beside its destination and renamed into place; it replaces only an earlier
EDA report (see outputs.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brats_seg.atomic import write_json
from brats_seg.data.discovery import FLAIR_CHANNEL, MODALITIES
from brats_seg.data.labels import CLASS_NAMES, EDEMA, NUM_CLASSES
from brats_seg.errors import ConfigError
from brats_seg.outputs import check_output_dir, staged_output

HISTOGRAM_BINS = 20
MONTAGE_PANELS = 24
REPORT_FILE = "eda.json"


@dataclass
class SliceTable:
    """Per selected slice: which case, which axial index, and the pixels of every class."""

    case_ids: list[str]
    case_index: np.ndarray  # (N,) position in case_ids
    z: np.ndarray  # (N,) axial index in the volume
    counts: np.ndarray  # (N, 4) int64 pixels per class


def slice_table(prepared) -> SliceTable:
    """Count the classes of every selected slice of every case, straight from the slice arrays."""
    case_ids = list(prepared.case_ids)
    index, zs, counts = [], [], []
    for i, case_id in enumerate(case_ids):
        _, y = prepared.read_slices(case_id)
        selected = np.asarray(prepared.case_meta(case_id)["selected"], dtype=np.int64)
        y = np.asarray(y)
        per_slice = np.stack(
            [np.count_nonzero(y == c, axis=(1, 2)) for c in range(NUM_CLASSES)], axis=1
        )
        counts.append(per_slice.reshape(-1, NUM_CLASSES).astype(np.int64))
        index.append(np.full(len(selected), i, dtype=np.int64))
        zs.append(selected)
    if not case_ids:
        return SliceTable(
            [], np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, NUM_CLASSES), np.int64)
        )
    return SliceTable(case_ids, np.concatenate(index), np.concatenate(zs), np.concatenate(counts))


def area_histograms(counts: np.ndarray, bins: int = HISTOGRAM_BINS) -> dict[str, dict]:
    """Per tumour class: summary and histogram of its area on the slices where it is present."""
    present_areas = [counts[counts[:, c] > 0, c] for c in range(1, NUM_CLASSES)]
    top = max([int(a.max()) for a in present_areas if a.size] or [1])
    edges = np.linspace(0, top, bins + 1)
    out = {}
    for c, areas in zip(range(1, NUM_CLASSES), present_areas, strict=True):
        hist, _ = np.histogram(areas, bins=edges)
        out[CLASS_NAMES[c]] = {
            "slices_present": int(areas.size),
            "min": int(areas.min()) if areas.size else None,
            "median": float(np.median(areas)) if areas.size else None,
            "mean": float(areas.mean()) if areas.size else None,
            "max": int(areas.max()) if areas.size else None,
            "histogram": {"edges": edges.tolist(), "counts": hist.tolist()},
        }
    return out


def label_statistics(table: SliceTable) -> dict[str, Any]:
    """The study's EDA numbers: pixels per class and slices lacking each class, plus per-case
    counts."""
    counts = table.counts
    pixels = counts.sum(axis=0)
    total = int(pixels.sum())
    per_case = []
    for i, case_id in enumerate(table.case_ids):
        mine = table.case_index == i
        per_case.append(
            {
                "case_id": case_id,
                "selected_slices": int(mine.sum()),
                "pixels_per_class": counts[mine].sum(axis=0).tolist(),
            }
        )
    slices_per_case = [c["selected_slices"] for c in per_case] or [0]
    return {
        "classes": list(CLASS_NAMES),
        "selected_slices": int(len(counts)),
        "selected_slices_per_case": {
            "min": int(min(slices_per_case)),
            "median": float(np.median(slices_per_case)),
            "max": int(max(slices_per_case)),
        },
        "pixels_per_class": pixels.tolist(),
        "pixel_share": [float(p / total) if total else 0.0 for p in pixels],
        "slices_lacking_class": [
            int(np.count_nonzero(counts[:, c] == 0)) for c in range(NUM_CLASSES)
        ],
        "area_per_slice": area_histograms(counts),
        "cases": per_case,
    }


# ------------------------------------------------------------------------------------------ figures


def edema_contrast(prepared, case_id: str) -> dict[str, float] | None:
    """Per channel: the percentile, among the case's healthy brain voxels (whole volume), at which
    its edema's median voxel lies; None without edema. A rank, so any per-case normalisation gives
    the same figure. Faint edema (a low percentile in FLAIR and T2) is what a model trained on a
    few patients with bright edema misses."""
    from brats_seg.data.preprocess import on_cached_grid

    x, classes_full, meta = prepared.load_volume(case_id)
    classes = on_cached_grid(classes_full, meta.get("crop_box"), prepared.preprocess.plane)
    edema = classes == EDEMA
    if not edema.any():
        return None
    out = {}
    for c, name in enumerate(_channel_names(prepared)[: x.shape[-1]]):
        channel = x[..., c]
        healthy = channel[(classes == 0) & (channel != 0)]
        if healthy.size == 0:
            continue
        median = float(np.median(channel[edema]))
        out[name] = round(100.0 * float(np.count_nonzero(healthy < median)) / healthy.size, 1)
    return out


def _channel_names(prepared) -> list[str]:
    names = list(MODALITIES)
    fifth = getattr(prepared.preprocess, "fifth_channel", None)
    return names + ([str(fifth)] if fifth else [])


def plot_class_totals(stats: dict, path: Path) -> None:
    from brats_seg.viz.overlay import label_colours, new_figure, save_png

    colours = [(0.6, 0.6, 0.6), *label_colours()[1:]]
    fig = new_figure(9, 3.2)
    left, right = fig.subplots(1, 2)
    left.bar(CLASS_NAMES, np.maximum(stats["pixels_per_class"], 1), color=colours)
    left.set_yscale("log")
    left.set_title("pixels per class (selected slices)", fontsize=9)
    right.bar(CLASS_NAMES, stats["slices_lacking_class"], color=colours)
    right.set_title(f"slices lacking the class (of {stats['selected_slices']})", fontsize=9)
    for ax in (left, right):
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    save_png(fig, path)


def plot_area_histograms(stats: dict, path: Path) -> None:
    from brats_seg.viz.overlay import label_colours, new_figure, save_png

    fig = new_figure(10, 3.0)
    axes = fig.subplots(1, NUM_CLASSES - 1, sharex=True)
    for ax, c in zip(axes, range(1, NUM_CLASSES), strict=True):
        entry = stats["area_per_slice"][CLASS_NAMES[c]]
        edges = np.asarray(entry["histogram"]["edges"])
        ax.stairs(
            entry["histogram"]["counts"],
            edges,
            fill=True,
            color=label_colours()[c],
            edgecolor="black",
        )
        median = f", median {entry['median']:.0f} px" if entry["median"] is not None else ""
        ax.set_title(f"{CLASS_NAMES[c]}: {entry['slices_present']} slices{median}", fontsize=9)
        ax.set_xlabel("pixels of the class on a slice", fontsize=8)
        ax.tick_params(labelsize=8)
    axes[0].set_ylabel("slices", fontsize=8)
    fig.tight_layout()
    save_png(fig, path)


def plot_overlays(prepared, table: SliceTable, picks: np.ndarray, path: Path) -> list[list]:
    """One row per picked slice: every input channel, then the labels over FLAIR. Returns [[case,
    z], ...]."""
    from brats_seg.viz.overlay import (
        class_legend,
        grey,
        new_figure,
        overlay_rgb,
        save_png,
        to_display,
    )

    names = _channel_names(prepared)
    cols = len(names) + 1
    fig = new_figure(1.9 * cols, 1.9 * len(picks) + 0.4)
    axes = fig.subplots(len(picks), cols, squeeze=False)
    shown = []
    rows_by_case: dict[int, int] = {}
    for row, pick in enumerate(picks):
        case = int(table.case_index[pick])
        first = rows_by_case.setdefault(case, int(np.flatnonzero(table.case_index == case)[0]))
        x, y = prepared.read_slices(table.case_ids[case])
        image, classes = np.asarray(x[pick - first], dtype=np.float32), np.asarray(y[pick - first])
        for col in range(cols):
            ax = axes[row, col]
            ax.set_axis_off()
            if col < len(names):
                ax.imshow(to_display(grey(image[..., col])), cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(to_display(overlay_rgb(image[..., FLAIR_CHANNEL], classes)))
            if row == 0:
                ax.set_title(names[col] if col < len(names) else "labels on flair", fontsize=8)
        axes[row, 0].text(
            -0.05,
            0.5,
            f"{table.case_ids[case]}\nz={int(table.z[pick])}",
            fontsize=7,
            rotation=90,
            ha="right",
            va="center",
            transform=axes[row, 0].transAxes,
        )
        shown.append([table.case_ids[case], int(table.z[pick])])
    class_legend(fig)
    fig.tight_layout(rect=(0.02, 0.3 / (1.9 * len(picks) + 0.4), 1, 1))
    save_png(fig, path)
    return shown


def volume_frames(prepared, case_id: str) -> tuple[list[np.ndarray], list[int], set[int]]:
    """Labels over FLAIR for every axial slice with brain of one case (display orientation)."""
    from brats_seg.data.preprocess import on_cached_grid
    from brats_seg.viz.overlay import overlay_rgb, to_display

    x, classes, meta = prepared.load_volume(case_id)
    classes = on_cached_grid(classes, meta.get("crop_box"), prepared.preprocess.plane)
    flair = np.asarray(x[..., FLAIR_CHANNEL], dtype=np.float32)
    with_brain = [z for z in range(flair.shape[0]) if np.any(flair[z] != 0)] or list(
        range(flair.shape[0])
    )
    frames = [to_display(overlay_rgb(flair[z], classes[z])) for z in with_brain]
    return frames, with_brain, set(int(z) for z in meta["selected"])


def plot_montage(
    frames: list[np.ndarray], zs: list[int], selected: set[int], case_id: str, path: Path
) -> list[int]:
    """Up to MONTAGE_PANELS evenly spaced slices through the volume; returns the axial indices
    shown."""
    from brats_seg.viz.overlay import save_montage

    picks = np.unique(
        np.linspace(0, len(frames) - 1, min(MONTAGE_PANELS, len(frames))).round().astype(int)
    )
    titles = [f"z={zs[i]}" + (" *" if zs[i] in selected else "") for i in picks]
    save_montage(
        path,
        [frames[i] for i in picks],
        titles,
        ncols=6,
        title=f"{case_id}: labels on FLAIR (* = selected for training)",
    )
    return [zs[i] for i in picks]


def save_volume_gif(
    frames: list[np.ndarray], zs: list[int], selected: set[int], case_id: str, path: Path
) -> None:
    from brats_seg.viz.overlay import save_gif

    titles = [f"{case_id} z={z}" + (" (selected)" if z in selected else "") for z in zs]
    save_gif(path, frames, titles)


# ------------------------------------------------------------------------------------------- report


def run_eda(
    prepared,
    out: str | os.PathLike,
    overlays: int = 6,
    montage_case: str | None = None,
    gif: bool = False,
    seed: int = 42,
) -> dict[str, Any]:
    """Compute the statistics and figures of ``prepared`` and write them to the folder ``out``."""
    out = Path(out)
    check_report_target(out)
    _check_overlays(overlays)
    montage_case = _montage_case(prepared, montage_case)
    table = slice_table(prepared)
    stats = label_statistics(table)
    report: dict[str, Any] = {"data": _data_description(prepared, table), **stats, "figures": {}}
    report["edema_contrast"] = {c: edema_contrast(prepared, c) for c in table.case_ids}

    with staged_output(out, "eda") as tmp:
        _write_figures(prepared, table, stats, report, tmp, overlays, montage_case, gif, seed)
        write_json(tmp / REPORT_FILE, report)
    report["out"] = str(out)
    return report


def overlay_picks(selected_slices: int, overlays: int, seed: int) -> np.ndarray:
    """Rows of the slice table shown as overlays: ``overlays`` distinct random rows (sorted), drawn
    with ``seed``."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(selected_slices, size=min(overlays, selected_slices), replace=False))


def _write_figures(
    prepared,
    table: SliceTable,
    stats: dict,
    report: dict,
    folder: Path,
    overlays: int,
    montage_case: str | None,
    gif: bool,
    seed: int,
) -> None:
    figures = report["figures"]
    plot_class_totals(stats, folder / "classes.png")
    figures["classes"] = "classes.png"
    plot_area_histograms(stats, folder / "area_histograms.png")
    figures["area_histograms"] = "area_histograms.png"
    picks = overlay_picks(len(table.z), overlays, seed)
    if len(picks):
        report["overlay_slices"] = plot_overlays(prepared, table, picks, folder / "overlays.png")
        figures["overlays"] = "overlays.png"
    if montage_case is not None:
        frames, zs, selected = volume_frames(prepared, montage_case)
        shown = plot_montage(frames, zs, selected, montage_case, folder / "montage.png")
        report["montage"] = {"case_id": montage_case, "slices": shown, "selected": sorted(selected)}
        figures["montage"] = "montage.png"
        if gif:
            save_volume_gif(frames, zs, selected, montage_case, folder / "volume.gif")
            figures["gif"] = "volume.gif"


def _data_description(prepared, table: SliceTable) -> dict[str, Any]:
    metas = [prepared.case_meta(c) for c in table.case_ids]
    conventions: dict[str, int] = {}
    for meta in metas:
        conventions[meta.get("convention", "?")] = (
            conventions.get(meta.get("convention", "?"), 0) + 1
        )
    selection = prepared.selection
    return {
        "name": prepared.name,
        "root": str(prepared.root),
        "cache": str(prepared.cache_dir),
        "cases": len(table.case_ids),
        "conventions": conventions,
        "axial_slices_in_volumes": int(sum(m.get("num_slices", 0) for m in metas)),
        "slice_shape": sorted({tuple(m["slice_shape"]) for m in metas}) if metas else [],
        "channels": _channel_names(prepared),
        "selection": selection.as_dict() if hasattr(selection, "as_dict") else str(selection),
        "preprocess": prepared.preprocess.as_dict()
        if hasattr(prepared.preprocess, "as_dict")
        else {},
    }


def check_report_target(out: Path) -> None:
    """Refuse to replace anything but a previous EDA report (or an empty folder)."""
    check_output_dir(out, "eda")


def _check_overlays(overlays: Any) -> None:
    if isinstance(overlays, bool) or not isinstance(overlays, (int, np.integer)) or overlays < 0:
        raise ConfigError(f"overlays={overlays!r}: must be a whole number >= 0")


def _montage_case(prepared, montage_case: Any) -> str | None:
    cases = list(prepared.case_ids)
    if montage_case in (None, ""):
        return cases[0] if cases else None
    montage_case = str(montage_case)
    if montage_case not in cases:
        shown = ", ".join(cases[:5]) + (" ..." if len(cases) > 5 else "")
        raise ConfigError(f"montage_case={montage_case}: no such case in the data ({shown})")
    return montage_case


# ------------------------------------------------------------------------------------------ summary


def format_summary(report: dict[str, Any]) -> str:
    """A short, readable summary of a report (what `brats-seg eda` prints)."""
    data = report["data"]
    selection = data["selection"]
    rule = selection.get("rule", "?") if isinstance(selection, dict) else str(selection)
    if rule == "threshold":
        rule = f"a tumour class covers > {selection['threshold']} px"
    shape = "/".join("x".join(str(s) for s in shp[:2]) for shp in data["slice_shape"]) or "-"
    per_case = report["selected_slices_per_case"]
    lines = [
        f"{data['name']}: {data['cases']} cases, {report['selected_slices']} "
        f"of {data['axial_slices_in_volumes']} "
        f"axial slices selected ({rule}), slices {shape}; "
        f"per case {per_case['min']}..{per_case['max']} "
        f"(median {per_case['median']:g})",
        f"  {'class':<11}{'pixels':>14}{'share':>9}{'slices lacking':>16}{'median area':>13}",
    ]
    for c, name in enumerate(CLASS_NAMES):
        area = report["area_per_slice"].get(name, {}).get("median") if c else None
        area_text = f"{area:.0f} px" if area is not None else "-"
        lines.append(
            f"  {name:<11}{report['pixels_per_class'][c]:>14,}{report['pixel_share'][c]:>9.2%}"
            f"{report['slices_lacking_class'][c]:>16,}{area_text:>13}"
        )
    if report["selected_slices"] == 0:
        lines.append(
            "  no slice passes the selection rule: lower data.selection.threshold or use "
            "data.selection.rule=tumour"
        )
    contrast = {c: v for c, v in (report.get("edema_contrast") or {}).items() if v}
    if contrast:
        names = [n for n in ("flair", "t2") if all(n in v for v in contrast.values())]
        faint = sorted(contrast, key=lambda c: contrast[c].get(names[0], 100.0) if names else 0)
        shown = ", ".join(
            f"{c} " + "/".join(f"{contrast[c][n]:.0f}" for n in names) for c in faint[:3]
        )
        lines.append(
            f"  edema median's percentile in healthy brain ({'/'.join(names)}), faintest first: "
            f"{shown}"
        )
    figures = ", ".join(report["figures"].values())
    lines.append(f"wrote {report.get('out', '')}/{REPORT_FILE} and {figures}")
    return "\n".join(lines)
