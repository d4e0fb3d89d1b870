"""The folder ``brats-seg view`` writes: a NiiVue page of cases, each shown as its four modalities
with the truth and the prediction as label overlays, that opens from ``file://`` with no server
and no network.

Chromium refuses ``fetch`` from a ``file://`` page, and NiiVue loads a volume by URL with fetch. So
the volumes travel in scripts instead, which a ``file://`` page may load: ``cases/<n>_<case>.js``
holds one case's volumes as base64 gzipped NIfTI and hands them to the page, which asks for a
case's script only when that case is shown. The folder::

    index.html           the page; the cases, modalities and label colours as JSON in it
    viewer.js            the page's code (static/viewer/)
    niivue/              NiiVue's single-file build, its licence and version (static/niivue/)
    cases/<n>_<case>.js  one case's volumes

Truth and prediction are stored as classes 0..3 (background, NCR/NET, edema, ET) whatever label
convention their files use, on the images' grid and with the first image's header, so the page
has one label table.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from brats_seg.atomic import write_text
from brats_seg.data.discovery import MODALITIES
from brats_seg.data.labels import CLASS_NAMES

PAGE = "index.html"
SCRIPT = "viewer.js"
NIIVUE = "niivue"
CASES = "cases"
# Where index.html carries its data (the template holds this word once).
_CONFIG_SLOT = "__VIEW_CONFIG__"
# The overlays' opacity when the page opens.
DEFAULT_OPACITY = 0.5
# The modality shown first: tumour and edema stand out on FLAIR.
FIRST_MODALITY = "flair"
# NiiVue's names for the images (the page's buttons), in channel order.
MODALITY_LABELS = {"t1": "T1", "t1ce": "T1ce", "t2": "T2", "flair": "FLAIR"}


@dataclass
class ViewedCase:
    """One case as the page shows it: its image files and, on their grid, classes 0..3 of its
    truth and prediction (either may be absent)."""

    case_id: str
    images: dict[str, Path]  # modality -> NIfTI file
    affine: np.ndarray
    header: Any  # the first image's nibabel header, written with the label volumes
    truth: np.ndarray | None = None
    prediction: np.ndarray | None = None
    prediction_file: Path | None = None


def write_viewer(
    cases: Iterable[ViewedCase], folder: Path, title: str, opacity: float = DEFAULT_OPACITY
) -> dict[str, Any]:
    """Write the viewer of ``cases`` (read one at a time) into ``folder`` (a fresh staging folder:
    see outputs.staged_output); returns the page's data (``cases`` and the page path)."""
    folder = Path(folder)
    _copy_static(folder)
    (folder / CASES).mkdir()
    entries = []
    for number, case in enumerate(cases, start=1):
        script = f"{CASES}/{number:03d}_{_safe(case.case_id)}.js"
        write_text(folder / script, _case_script(case))
        focus = focus_voxel(case)
        entries.append(
            {
                "id": case.case_id,
                "script": script,
                "truth": case.truth is not None,
                "prediction": case.prediction is not None,
                "prediction_file": str(case.prediction_file) if case.prediction_file else None,
                "focus": focus,
                # in world coordinates, which NiiVue places by (it shows the volume turned to RAS)
                "focus_mm": world(case.affine, focus),
                "shape": list(case.header.get_data_shape()[:3]),
                "tumour_voxels": {
                    key: int(np.count_nonzero(volume))
                    for key, volume in (("truth", case.truth), ("prediction", case.prediction))
                    if volume is not None
                },
            }
        )
    config = {
        "title": title,
        "cases": entries,
        "modalities": [{"key": m, "label": MODALITY_LABELS[m]} for m in MODALITIES],
        "first_modality": FIRST_MODALITY,
        "classes": label_table(),
        "opacity": float(opacity),
    }
    template = _static("viewer", PAGE).read_text(encoding="utf-8")
    # "</" inside a <script> element would end it early
    data = json.dumps(config, indent=1).replace("</", "<\\/")
    write_text(folder / PAGE, template.replace(_CONFIG_SLOT, data))
    return {"page": folder / PAGE, "cases": entries}


def label_table() -> list[dict[str, Any]]:
    """The tumour classes as the page paints them: value, name and colour (overlay.py's)."""
    from brats_seg.viz.overlay import label_colours

    colours = np.rint(label_colours() * 255).astype(int).tolist()
    return [
        {"value": value, "name": CLASS_NAMES[value], "rgb": colours[value]}
        for value in range(1, len(CLASS_NAMES))
    ]


def focus_voxel(case: ViewedCase) -> list[int]:
    """The voxel the page opens at: on each axis, the slice with the most tumour (the truth's, else
    the prediction's); the volume's centre where there is none."""
    shape = tuple(int(n) for n in case.header.get_data_shape()[:3])
    labels = case.truth if case.truth is not None else case.prediction
    if labels is None or not np.any(labels):
        return [n // 2 for n in shape]
    tumour = np.asarray(labels) > 0
    focus = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        focus.append(int(np.argmax(tumour.sum(axis=others))))
    return focus


def world(affine: np.ndarray, voxel: list[int]) -> list[float]:
    """The scanner coordinates (mm) of a voxel index."""
    return [round(float(v), 4) for v in (np.asarray(affine) @ [*voxel, 1.0])[:3]]


def _case_script(case: ViewedCase) -> str:
    volumes: dict[str, str | None] = {m: _file_base64(case.images[m]) for m in MODALITIES}
    for key in ("truth", "prediction"):
        classes = getattr(case, key)
        volumes[key] = None if classes is None else _labels_base64(classes, case)
    return f"bratsView.receive({json.dumps(case.case_id)}, {json.dumps(volumes)});\n"


def _file_base64(path: Path) -> str:
    """A NIfTI file as base64 of its gzipped bytes (as stored when it is already gzipped)."""
    raw = Path(path).read_bytes()
    if raw[:2] != b"\x1f\x8b":
        raw = gzip.compress(raw, mtime=0)
    return base64.b64encode(raw).decode("ascii")


def _labels_base64(classes: np.ndarray, case: ViewedCase) -> str:
    from brats_seg.data.nifti import nifti_image

    image = nifti_image(np.asarray(classes, dtype=np.uint8), case.affine, case.header)
    return base64.b64encode(gzip.compress(image.to_bytes(), mtime=0)).decode("ascii")


def _safe(case_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", case_id)[:80]


def _static(*parts: str):
    return resources.files("brats_seg.viz").joinpath("static", *parts)


def _copy_static(folder: Path) -> None:
    (folder / SCRIPT).write_bytes(_static("viewer", SCRIPT).read_bytes())
    (folder / NIIVUE).mkdir()
    for entry in _static(NIIVUE).iterdir():
        if entry.is_file():
            (folder / NIIVUE / entry.name).write_bytes(entry.read_bytes())
