"""Synthetic BraTS-like glioma cases: four MRI modalities and a BraTS-2021 segmentation, written as
.nii.gz.

Every case is a phantom in a 240 x 240 x 155 mm field of view (the BraTS one), sampled on whatever
voxel grid is asked for, so that a 96 x 96 x 64 volume looks like a downsampled 240 x 240 x 155 one.
The anatomy is a skull-stripped brain (exactly 0 outside it) with grey matter, white matter,
cortical CSF and ventricles, and a lobulated tumour: an enhancing rim (label 4) around a necrotic
core (label 1) inside oedema (label 2). The images get per-modality contrasts, a smooth
multiplicative bias field, Rician noise and a per-case intensity scale (BraTS is not
intensity-normalised).

Smooth random fields are sums of Gaussian bumps on a coarse lattice, evaluated separably with three
small matrix products, which keeps a full 240 x 240 x 155 case at a few seconds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brats_seg.atomic import atomic_dir

MODALITIES = ("t1", "t1ce", "t2", "flair")
REFERENCE_FOV_MM = (240.0, 240.0, 155.0)
GENERATOR_VERSION = 1
CASE_PREFIX = "SynBraTS_"
MIN_SIDE = {"in_plane": 32, "depth": 16}
# Below this many voxels to write, starting worker processes costs more than it saves.
POOL_MIN_VOXELS = 4_000_000
# Smallest acceptable largest axial oedema section of a tumour (mm^2 of the 240 x 240 mm field of
# view). The study kept slices where a class covers > 3000 px (mm^2); configs/data/synthetic.yaml's
# 300 px at 96 x 96 is 1875 mm^2.
MIN_EDEMA_SECTION_MM2 = 2600.0

# Tissue codes of the phantom (not the BraTS labels).
BACKGROUND, CSF, GM, WM, EDEMA, NECROSIS, ENHANCING, VESSEL = range(8)
TISSUE_NAMES = (
    "background",
    "csf",
    "grey_matter",
    "white_matter",
    "edema",
    "necrosis",
    "enhancing",
    "vessel",
)
# BraTS 2017-2021 labels of the tumour tissues; everything else is 0.
BRATS_LABEL = {NECROSIS: 1, EDEMA: 2, ENHANCING: 4}

# Relative intensity of each tissue, in the order of the codes above.
CONTRAST = {
    "t1": (0.0, 0.30, 0.62, 0.85, 0.52, 0.28, 0.50, 0.62),
    "t1ce": (0.0, 0.28, 0.60, 0.80, 0.55, 0.22, 1.50, 2.40),
    "t2": (0.0, 1.00, 0.62, 0.45, 0.90, 0.95, 0.70, 0.40),
    "flair": (0.0, 0.12, 0.62, 0.48, 1.00, 0.55, 0.80, 0.60),
}
# Intensity of relative level 1.0, drawn log-uniformly per case and modality (real cases span
# these).
LEVEL_RANGE = {
    "t1": (500.0, 1200.0),
    "t1ce": (350.0, 2400.0),
    "t2": (380.0, 750.0),
    "flair": (350.0, 1400.0),
}


@dataclass
class Anatomy:
    """One phantom: a tissue code per voxel, plus the voxel size it was sampled at."""

    tissue: np.ndarray  # (X, Y, Z) uint8 tissue codes
    voxel_mm: tuple[float, float, float]

    @property
    def brain(self) -> np.ndarray:
        return self.tissue != BACKGROUND

    def seg(self) -> np.ndarray:
        """BraTS-2021 labels: 0 background/healthy, 1 necrosis, 2 oedema, 4 enhancing tumour."""
        lut = np.zeros(len(TISSUE_NAMES), dtype=np.uint8)
        for code, label in BRATS_LABEL.items():
            lut[code] = label
        return lut[self.tissue]


# ------------------------------------------------------------------------------------------- fields


def _axes_mm(shape: Sequence[int]) -> list[np.ndarray]:
    """Voxel-centre coordinates (mm, centred on the field of view) along each axis."""
    return [
        ((np.arange(n) + 0.5) * fov / n - fov / 2).astype(np.float32)
        for n, fov in zip(shape, REFERENCE_FOV_MM, strict=False)
    ]


def _open_grid(axes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]


def smooth_field(axes: list[np.ndarray], rng: np.random.Generator, spacing_mm: float) -> np.ndarray:
    """A smooth random field with roughly unit standard deviation and features about ``spacing_mm``
    wide."""
    bases = []
    for coords in axes:
        start, stop = float(coords.min()) - spacing_mm, float(coords.max()) + spacing_mm
        nodes = np.arange(start, stop + spacing_mm, spacing_mm, dtype=np.float32)
        bases.append(
            np.exp(-0.5 * ((coords[:, None] - nodes[None, :]) / spacing_mm) ** 2).astype(np.float32)
        )
    coeffs = rng.standard_normal([b.shape[1] for b in bases]).astype(np.float32)
    field = np.tensordot(bases[0], coeffs, axes=(1, 0))  # (X, ny, nz)
    field = np.matmul(bases[1], field)  # (X, Y, nz)
    field = np.matmul(field, bases[2].T)  # (X, Y, Z)
    # Each axis contributes sum_k exp(-d_k^2) ~ sqrt(pi) to the variance of a unit-coefficient sum.
    return field / np.float32(np.pi**0.75)


def _ellipsoid_radius(grid, centre, semi_axes) -> np.ndarray:
    """Normalised ellipsoidal radius: < 1 inside the ellipsoid."""
    x, y, z = grid
    return np.sqrt(
        ((x - centre[0]) / semi_axes[0]) ** 2
        + ((y - centre[1]) / semi_axes[1]) ** 2
        + ((z - centre[2]) / semi_axes[2]) ** 2
    )


# ------------------------------------------------------------------------------------------ anatomy


def _brain_tissue(axes, rng: np.random.Generator) -> tuple[np.ndarray, tuple, tuple]:
    """Healthy brain: tissue codes plus the brain's centre and semi-axes (mm)."""
    grid = _open_grid(axes)
    centre = (rng.uniform(-3, 3), rng.uniform(-4, 4), rng.uniform(-2, 2))
    semi_axes = (rng.uniform(62, 72), rng.uniform(80, 92), rng.uniform(54, 62))
    # A bounded wobble keeps the whole brain inside the field of view (as in skull-stripped BraTS
    # volumes).
    wobble = np.clip(1 + 0.035 * smooth_field(axes, rng, 35.0), 0.93, 1.07)
    radius = _ellipsoid_radius(grid, centre, semi_axes) * wobble
    brain = radius < 1.0

    tissue = np.full(radius.shape, GM, dtype=np.uint8)
    folds = smooth_field(axes, rng, 6.0)
    tissue[radius < 0.8 + 0.07 * folds] = WM
    deep_size = rng.uniform(0.9, 1.1)
    for side in (-1, 1):
        nucleus = (centre[0] + side * 19, centre[1] + 4, centre[2] - 2)
        tissue[_ellipsoid_radius(grid, nucleus, (9 * deep_size, 13, 10)) < 1] = GM
    sulci = (np.abs(smooth_field(axes, rng, 10.0)) < 0.15) & (radius > 0.84)
    tissue[sulci] = CSF
    tissue[radius > 0.965] = CSF
    ventricle_size = rng.uniform(0.8, 1.5)
    for side in (-1, 1):
        horn = _ellipsoid_radius(
            grid,
            (centre[0] + side * 7 * ventricle_size, centre[1] - 4, centre[2] + 12),
            (5 * ventricle_size, 27, 11 * ventricle_size),
        )
        tissue[horn < 1] = CSF
    tissue[~brain] = BACKGROUND
    return tissue, centre, semi_axes


Lobe = tuple[np.ndarray, np.ndarray]  # centre and semi-axes (mm) of one ellipsoid


def _tumour_lobes(rng: np.random.Generator, centre, brain_axes, radius_mm: float) -> list[Lobe]:
    """Centres and semi-axes (mm) of a main ellipsoid and 2-4 overlapping satellites."""
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    core = np.array(centre) + rng.uniform(0.15, 0.5) * direction * np.array(brain_axes)
    lobes = [(core, radius_mm * rng.uniform(0.8, 1.2, size=3))]
    for _ in range(rng.integers(2, 5)):
        offset = rng.standard_normal(3)
        offset *= radius_mm * rng.uniform(0.4, 0.75) / np.linalg.norm(offset)
        lobes.append(
            (core + offset, radius_mm * rng.uniform(0.45, 0.75) * rng.uniform(0.8, 1.2, size=3))
        )
    return lobes


def _box(axes, lobes, reach: float) -> tuple[slice, ...]:
    """Index box holding every lobe grown by ``reach`` (the largest distance wobble allows)."""
    low = np.min([c - reach * a for c, a in lobes], axis=0)
    high = np.max([c + reach * a for c, a in lobes], axis=0)
    box = []
    for coords, lo, hi in zip(axes, low, high, strict=True):
        inside = np.flatnonzero((coords >= lo) & (coords <= hi))
        box.append(slice(int(inside[0]), int(inside[-1]) + 1) if inside.size else slice(0, 0))
    return tuple(box)


def _paint_tumour(
    tissue: np.ndarray, axes, rng: np.random.Generator, lobes
) -> tuple[tuple[slice, ...], np.ndarray]:
    """Tissue codes of the tumour's bounding box with oedema, enhancing rim and necrotic core
    painted in.

    The lobes' normalised distance (< 1 inside) is made irregular by a smooth multiplicative wobble;
    the core and the necrosis are lower levels of that distance with wobbles of their own. Only
    brain voxels change.
    """
    max_wobble = 0.3
    box = _box(axes, lobes, reach=1.0 / (1.0 - max_wobble))
    sub_axes = [coords[s] for coords, s in zip(axes, box, strict=True)]
    region = tissue[box].copy()
    if region.size == 0:
        return box, region
    grid = _open_grid(sub_axes)
    distance = np.minimum.reduce([_ellipsoid_radius(grid, c, a) for c, a in lobes])
    distance *= np.clip(
        1 + 0.18 * smooth_field(sub_axes, rng, 10.0), 1 - max_wobble, 1 + max_wobble
    )
    core_fraction = rng.uniform(0.5, 0.68)
    necrosis_fraction = rng.uniform(0.55, 0.8)
    core = distance < core_fraction * (1 + 0.08 * smooth_field(sub_axes, rng, 8.0))
    necrosis = distance < core_fraction * necrosis_fraction * (
        1 + 0.12 * smooth_field(sub_axes, rng, 6.0)
    )
    brain = region != BACKGROUND
    region[(distance < 1) & brain] = EDEMA
    region[core & brain] = ENHANCING
    region[necrosis & brain] = NECROSIS
    return box, region


def _add_tumour(tissue: np.ndarray, axes, rng: np.random.Generator, centre, brain_axes) -> None:
    """Paint a lobulated tumour into ``tissue``.

    A draw whose largest axial oedema section is under MIN_EDEMA_SECTION_MM2 (a small tumour, or one
    mostly cut off by the brain's edge) is redrawn larger, so that every case has slices passing the
    study-like selection threshold whatever the voxel grid.
    """
    pixel_mm2 = REFERENCE_FOV_MM[0] / len(axes[0]) * REFERENCE_FOV_MM[1] / len(axes[1])
    radius = rng.uniform(28.0, 42.0)
    for attempt in range(4):
        box, region = _paint_tumour(
            tissue, axes, rng, _tumour_lobes(rng, centre, brain_axes, radius)
        )
        section = np.count_nonzero(region == EDEMA, axis=(0, 1)).max(initial=0) * pixel_mm2
        if section >= MIN_EDEMA_SECTION_MM2 or attempt == 3:
            break
        radius *= 1.15
    tissue[box] = region


def _add_vessels(tissue: np.ndarray, axes, rng: np.random.Generator) -> None:
    """Thin tubes (where two smooth fields both cross zero) in healthy tissue: bright on T1ce."""
    tubes = (np.abs(smooth_field(axes, rng, 18.0)) < 0.05) & (
        np.abs(smooth_field(axes, rng, 18.0)) < 0.05
    )
    tissue[tubes & ((tissue == GM) | (tissue == WM) | (tissue == CSF))] = VESSEL


def make_anatomy(shape: Sequence[int] = (240, 240, 155), rng: Any = None) -> Anatomy:
    """Draw one phantom on a ``shape`` voxel grid covering the BraTS field of view."""
    rng = np.random.default_rng(rng)
    shape = tuple(int(n) for n in shape)
    axes = _axes_mm(shape)
    tissue, centre, brain_axes = _brain_tissue(axes, rng)
    _add_tumour(tissue, axes, rng, centre, brain_axes)
    _add_vessels(tissue, axes, rng)
    voxel = tuple(fov / n for fov, n in zip(REFERENCE_FOV_MM, shape, strict=False))
    return Anatomy(tissue=tissue, voxel_mm=voxel)


# ------------------------------------------------------------------------------------------- images


def _bias_field(axes, rng: np.random.Generator) -> np.ndarray:
    return np.exp(0.10 * smooth_field(axes, rng, 70.0))


def _partial_volume(image: np.ndarray, voxel_mm: Sequence[float]) -> np.ndarray:
    """Blur by about 0.8 mm (never more than 0.6 voxel) so edges look acquired rather than
    painted."""
    from scipy.ndimage import gaussian_filter

    sigma = [min(0.6, 0.8 / v) for v in voxel_mm]
    return gaussian_filter(image, sigma=sigma, truncate=3.0)


def render_images(anatomy: Anatomy, rng: Any = None) -> dict[str, np.ndarray]:
    """Render int16 t1, t1ce, t2 and flair volumes of ``anatomy``; 0 exactly outside the brain, >= 1
    inside."""
    rng = np.random.default_rng(rng)
    axes = _axes_mm(anatomy.tissue.shape)
    brain = anatomy.brain
    tumour = np.isin(anatomy.tissue, list(BRATS_LABEL))
    texture = (
        1 + 0.035 * smooth_field(axes, rng, 5.0) + 0.08 * tumour * smooth_field(axes, rng, 7.0)
    )
    images = {}
    for name in MODALITIES:
        relative = np.asarray(CONTRAST[name], dtype=np.float32)[anatomy.tissue] * texture
        relative = _partial_volume(relative, anatomy.voxel_mm) * _bias_field(axes, rng)
        level = np.exp(rng.uniform(*np.log(LEVEL_RANGE[name])))
        sigma = rng.uniform(0.015, 0.035)
        inside = relative[brain]
        noisy = np.hypot(
            inside + sigma * rng.standard_normal(inside.shape, dtype=np.float32),
            sigma * rng.standard_normal(inside.shape, dtype=np.float32),
        )
        image = np.zeros(anatomy.tissue.shape, dtype=np.int16)
        image[brain] = np.clip(np.rint(noisy * level), 1, np.iinfo(np.int16).max).astype(np.int16)
        images[name] = image
    return images


def make_case(
    shape: Sequence[int] = (240, 240, 155), rng: Any = None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One synthetic case: ``({modality: int16 volume}, uint8 seg with labels 0, 1, 2, 4)``.

    ``rng`` is a numpy Generator, a seed, or None (fresh entropy). Anatomy and images draw from the
    same stream.
    """
    rng = np.random.default_rng(rng)
    anatomy = make_anatomy(shape, rng)
    return render_images(anatomy, rng), anatomy.seg()


# -------------------------------------------------------------------------------------------- files


def brats_affine(shape: Sequence[int]) -> np.ndarray:
    """The affine of real BraTS cases (LPS, 1 mm voxels), for a volume of ``shape``."""
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine[1, 3] = shape[1] - 1
    return affine


def case_files(case_dir: Path, case_id: str) -> dict[str, Path]:
    names = (*MODALITIES, "seg")
    return {name: Path(case_dir) / f"{case_id}_{name}.nii.gz" for name in names}


def is_complete(case_dir: Path, case_id: str) -> bool:
    return all(path.is_file() for path in case_files(case_dir, case_id).values())


def provenance(seed: Any) -> str:
    """The header description of a synthetic file: generator version and seed (at most 80
    characters)."""
    seed_text = ",".join(str(int(s)) for s in np.atleast_1d(np.asarray(seed, dtype=object)))
    return f"brats_seg synthetic v{GENERATOR_VERSION} seed={seed_text}"[:80]


def write_case(out_dir: str | os.PathLike, case_id: str, shape: Sequence[int], seed: Any) -> Path:
    """Write ``<out_dir>/<case_id>/<case_id>_{t1,t1ce,t2,flair,seg}.nii.gz`` from ``make_case(shape,
    seed)``.

    The files are written into a temporary folder renamed into place: the case appears complete or
    not at all.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / case_id
    images, seg = make_case(shape, np.random.default_rng(seed))
    affine = brats_affine(shape)
    from brats_seg.data.nifti import write_nifti

    with atomic_dir(final, prefix=f".{case_id}.") as tmp:
        files = case_files(tmp, case_id)
        for name, volume in images.items():
            write_nifti(files[name], volume, affine, description=provenance(seed))
        write_nifti(files["seg"], seg, affine, description=provenance(seed))
    return final


def case_id(index: int) -> str:
    return f"{CASE_PREFIX}{index:05d}"


def validate_options(
    cases: Any, shape: Any, cases_option: str = "cases", shape_option: str = "shape"
) -> tuple[int, tuple[int, int, int]]:
    """Check the generator options; raise ConfigError naming the option. Returns (cases, shape) as
    ints."""
    from brats_seg.errors import ConfigError

    if isinstance(cases, bool) or not isinstance(cases, (int, np.integer)) or cases < 1:
        raise ConfigError(f"{cases_option}={cases!r}: must be a whole number >= 1")
    try:
        sides = [s for s in shape]
    except TypeError:
        sides = []
    if len(sides) != 3 or any(
        isinstance(s, bool) or not isinstance(s, (int, np.integer)) for s in sides
    ):
        raise ConfigError(
            f"{shape_option}={_show(shape)}: must be three whole numbers, e.g. [240,240,155]"
        )
    low_plane, low_depth = MIN_SIDE["in_plane"], MIN_SIDE["depth"]
    if min(sides[:2]) < low_plane or sides[2] < low_depth:
        raise ConfigError(
            f"{shape_option}={_show(shape)}: sides must be at least {low_plane} in-plane "
            f"and {low_depth} slices deep"
        )
    return int(cases), (int(sides[0]), int(sides[1]), int(sides[2]))


def _show(value: Any) -> str:
    try:
        return "[" + ",".join(str(v) for v in value) + "]"
    except TypeError:
        return repr(value)


def _write_indexed_case(args: tuple) -> str:
    out, index, shape, seed = args
    write_case(out, case_id(index), shape, seed=[int(seed), int(index)])
    return case_id(index)


def write_synthetic_dataset(
    out: str | os.PathLike,
    cases: int,
    shape: Sequence[int] = (240, 240, 155),
    seed: int = 0,
    workers: int = 1,
) -> Path:
    """Write ``cases`` cases named SynBraTS_00000... under ``out`` and a ``dataset.json`` describing
    them.

    Case i is drawn from the seed sequence (seed, i), so any subset can be (re)generated in any
    order or in parallel with the same result. Cases already complete are skipped, which makes an
    interrupted run resumable.
    """
    from brats_seg.outputs import check_files_beside, files_beside

    cases, shape = validate_options(cases, shape)
    out = Path(out)
    # The cases and dataset.json are written beside whatever else the folder holds; a folder of one
    # of those names that synth did not write is refused, not replaced.
    names = [case_id(i) for i in range(cases)] + ["dataset.json"]
    check_files_beside(out, names, "synth", own=_written_by_generator)
    if out.is_dir():
        _check_existing_cases(out, cases, shape, seed)
    with files_beside(out, names, "synth", own=_written_by_generator):
        todo = [
            (out, i, shape, seed)
            for i in range(cases)
            if not is_complete(out / case_id(i), case_id(i))
        ]
        if workers > 1 and len(todo) > 1 and len(todo) * int(np.prod(shape)) >= POOL_MIN_VOXELS:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: the caller may already run TensorFlow threads, which do not survive fork.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                max_workers=min(workers, len(todo)), mp_context=context
            ) as pool:
                list(pool.map(_write_indexed_case, todo))
        else:
            for job in todo:
                _write_indexed_case(job)
        _write_description(out, cases, shape, seed)
    return out


def _written_by_generator(path: Path) -> bool:
    """A complete case or a dataset.json this generator wrote before its folders had a marker
    (their headers and generator name say so; _check_existing_cases checks their settings)."""
    if path.name == "dataset.json":
        try:
            return read_description(path.parent).get("generator") == "brats_seg.data.synthetic"
        except (OSError, ValueError, AttributeError):
            return False
    return path.name.startswith(CASE_PREFIX) and is_complete(path, path.name)


def _check_existing_cases(out: Path, cases: int, shape: tuple[int, int, int], seed: int) -> None:
    """Refuse to mix cases of other settings (shape, seed, generator version) or a larger set into
    one folder."""
    import nibabel as nib

    from brats_seg.errors import ConfigError

    present = sorted(p.name for p in out.iterdir() if p.is_dir() and p.name.startswith(CASE_PREFIX))
    extra = [name for name in present if name not in {case_id(i) for i in range(cases)}]
    if extra:
        raise ConfigError(
            f"out={out}: already holds {len(present)} synthetic cases (e.g. {extra[0]}), more than "
            f"cases={cases}; pass cases>={len(present)} or choose another folder"
        )
    for i in range(cases):
        name = case_id(i)
        if name not in present or not is_complete(out / name, name):
            continue
        header = nib.load(case_files(out / name, name)["seg"]).header
        found = header["descrip"].tobytes().decode("ascii", "replace").rstrip("\x00")
        if tuple(header.get_data_shape()) != shape or found != provenance([seed, i]):
            size = "x".join(str(s) for s in header.get_data_shape())
            raise ConfigError(
                f"out={out}: {name} was generated with other settings ({size}, '{found}'); "
                f"choose another folder or delete it"
            )


def _write_description(out: Path, cases: int, shape: tuple[int, int, int], seed: int) -> None:
    from brats_seg.atomic import write_json

    write_json(
        out / "dataset.json",
        {
            "name": "synthetic",
            "generator": "brats_seg.data.synthetic",
            "generator_version": GENERATOR_VERSION,
            "cases": cases,
            "shape": list(shape),
            "seed": int(seed),
            "case_ids": [case_id(i) for i in range(cases)],
            "modalities": list(MODALITIES),
            "labels": {
                "0": "background",
                "1": "necrotic core (NCR)",
                "2": "edema (ED)",
                "4": "enhancing tumour (ET)",
            },
            "convention": "BraTS 2017-2021 (ET = 4)",
            "affine": brats_affine(shape).tolist(),
            "field_of_view_mm": list(REFERENCE_FOV_MM),
        },
    )


# -------------------------------------------------------------------------------------------- cache


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    """Read ``key`` from a DictConfig or a plain mapping."""
    if isinstance(cfg, Mapping) or hasattr(cfg, "get"):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def _synth_options(data_cfg: Any) -> tuple[int, list[int], int]:
    """Number of cases, volume shape and seed of ``data_cfg.synth``, checked; what it leaves out
    is configs/data/synthetic.yaml's."""
    from brats_seg.config import group_defaults
    from brats_seg.config_schema import to_plain

    synth = {
        **group_defaults("data", "synthetic")["synth"],
        **(to_plain(_get(data_cfg, "synth")) or {}),
    }
    cases, shape = validate_options(
        synth["cases"], list(synth["shape"]), "data.synth.cases", "data.synth.shape"
    )
    return cases, shape, int(synth["seed"])


def synthetic_root(data_cfg: Any) -> Path:
    """Where the synthetic set described by ``data_cfg.synth`` lives in the cache."""
    cases, shape, seed = _synth_options(data_cfg)
    cache_dir = _get(data_cfg, "cache_dir")
    if cache_dir in (None, ""):
        from brats_seg.errors import ConfigError

        raise ConfigError("data.cache_dir is not set: the synthetic set is generated there")
    height, width, depth = shape
    return Path(cache_dir) / "synthetic" / f"{cases}x{height}x{width}x{depth}-seed{seed}"


def ensure_synthetic_dataset(data_cfg: Any) -> Path:
    """Return the root of the synthetic data set, generating it into the cache first if needed.

    ``data_cfg`` is the ``data`` config (DictConfig or dict). When ``data.root`` is set it is
    returned as is. A lock file keeps two processes (sweep jobs) from generating the same set at
    once.
    """
    root = _get(data_cfg, "root")
    if root not in (None, ""):
        return Path(root)
    root = synthetic_root(data_cfg)
    if (root / "dataset.json").is_file():
        return root
    from filelock import FileLock

    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root.parent / f".{root.name}.lock")):
        if not (root / "dataset.json").is_file():
            cases, shape, seed = _synth_options(data_cfg)
            workers = int(_get(data_cfg, "workers", 1) or 1)
            write_synthetic_dataset(root, cases, shape, seed=seed, workers=workers)
    return root


def read_description(root: str | os.PathLike) -> dict:
    return json.loads((Path(root) / "dataset.json").read_text(encoding="utf-8"))
