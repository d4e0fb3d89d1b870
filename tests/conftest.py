"""Shared fixtures.

The real BraTS cases are read from ../shared/data/brats-real beside the repository.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from brats_seg.data.discovery import MODALITIES, CaseFiles, file_name
from brats_seg.data.labels import to_convention
from brats_seg.data.nifti import DEFAULT_AFFINE, write_nifti

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# The repository root (the folder holding pyproject.toml), and the tests' data files.
REPO_ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
FIXTURES = REPO_ROOT / "tests" / "fixtures"
REAL_DATA = Path(
    os.environ.get("BRATS_SEG_REAL_DATA", REPO_ROOT.parent / "shared" / "data" / "brats-real")
)


@pytest.fixture(autouse=True)
def _absl_logs_to_the_real_stderr():
    """absl's logging handler (installed once TensorFlow is imported in-process) holds the stderr
    of the moment, which under pytest is the capture file, and closes it when a later in-process
    Hydra app reconfigures logging (logging.config clears every handler): pytest then loses its
    capture. Pointing it at the process's own stderr, which absl never closes, keeps the capture."""
    absl_logging = sys.modules.get("absl.logging")
    if absl_logging is not None:
        absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__
    yield


@pytest.fixture(scope="session")
def real_data_root() -> Path:
    if not (REAL_DATA / "BraTS2021_00000").is_dir():
        pytest.skip(f"real BraTS cases not found at {REAL_DATA} (set BRATS_SEG_REAL_DATA)")
    return REAL_DATA


@dataclass(frozen=True)
class RealCase:
    """One case of the real data as its PROVENANCE.md describes it."""

    case_id: str
    patient: str
    class_counts: tuple[int, int, int]  # NCR/NET, edema, ET voxels
    tumour_slices: tuple[int, int]  # first and last axial slice holding tumour
    largest_tumour_slice: int


def read_provenance(root: Path) -> dict[str, RealCase]:
    """The cases PROVENANCE.md lists (its table of case folders and patients, and each case's
    "Label voxel counts" and "Tumour present on axial slices" lines), by case id."""
    text = (root / "PROVENANCE.md").read_text()
    patients = {
        m.group(1): m.group(2).strip("* ").split()[0]
        for m in re.finditer(r"^\| `([^`/]+)/` \|.*\| ([^|]+?) \|$", text, re.M)
    }
    cases = {}
    for section in re.split(r"^#### ", text, flags=re.M)[1:]:
        case_id = section.split("\n", 1)[0].strip()
        counts_line = re.search(r"Label voxel counts: (.*)", section)[1]
        counts = {int(k): int(v) for k, v in re.findall(r"(\d): (\d+)", counts_line)}
        et = counts.get(4, counts.get(3))
        z = re.search(r"axial slices z=(\d+)\.\.(\d+)", section)
        cases[case_id] = RealCase(
            case_id,
            patients[case_id],
            (counts[1], counts[2], et),
            (int(z[1]), int(z[2])),
            int(re.search(r"largest tumour area at z=(\d+)", section)[1]),
        )
    assert sorted(cases) == sorted(patients), "PROVENANCE.md: case table and sections disagree"
    return cases


def patient_groups(cases: dict[str, RealCase]) -> list[list[str]]:
    """Case ids grouped by the patient column of PROVENANCE.md, each group sorted."""
    groups: dict[str, list[str]] = {}
    for case in sorted(cases.values(), key=lambda c: c.case_id):
        groups.setdefault(case.patient, []).append(case.case_id)
    return sorted(groups.values())


@pytest.fixture(scope="session")
def real_cases(real_data_root) -> dict[str, RealCase]:
    return read_provenance(real_data_root)


@pytest.fixture(scope="session")
def duplicate_pair(real_cases) -> tuple[str, str]:
    """The one patient PROVENANCE.md lists under two case folders (the same scan, two names)."""
    pairs = [g for g in patient_groups(real_cases) if len(g) > 1]
    assert len(pairs) == 1 and len(pairs[0]) == 2, pairs
    return tuple(pairs[0])


def write_case(
    folder: str | os.PathLike,
    case_id: str,
    image: np.ndarray,
    classes: np.ndarray | None = None,
    *,
    convention: str = "brats2021",
    affine: np.ndarray = DEFAULT_AFFINE,
    image_dtype=np.int16,
    seg_dtype=np.uint8,
    ext: str = ".nii.gz",
) -> CaseFiles:
    """Write a case folder in BraTS naming: ``image`` (X, Y, Z, 4) in channel order t1, t1ce, t2,
    flair, and ``classes`` (0..3) mapped to the labels of ``convention``; returns the written
    files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images = {}
    for c, modality in enumerate(MODALITIES):
        images[modality] = write_nifti(
            folder / file_name(case_id, modality, convention, ext),
            np.asarray(image[..., c]).astype(image_dtype),
            affine,
        )
    seg = None
    if classes is not None:
        labels = to_convention(np.asarray(classes, dtype=np.uint8), convention).astype(seg_dtype)
        seg = write_nifti(folder / file_name(case_id, "seg", convention, ext), labels, affine)
    return CaseFiles(case_id, folder, images, seg, convention)


def blob_case(
    shape: tuple[int, int, int] = (32, 32, 16), seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A small BraTS-like case for tests and benchmarks.

    An ellipsoidal brain with noisy intensities (int-valued, zero outside) and a spherical tumour
    (edema around a necrotic core with an enhancing rim).

    Returns ``image`` (X, Y, Z, 4) float32 and ``classes`` (X, Y, Z) uint8.
    """
    rng = np.random.default_rng(seed)
    grid = np.stack(
        np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"), axis=-1
    )
    centre = np.array(shape, dtype=np.float32) / 2 - 0.5
    brain = (((grid - centre) / (np.array(shape) * 0.42)) ** 2).sum(-1) <= 1.0
    image = np.zeros(shape + (4,), dtype=np.float32)
    for c in range(4):
        noise = rng.normal(100.0 * (c + 1), 15.0, size=shape)
        image[..., c] = np.where(brain, np.maximum(np.rint(noise), 1.0), 0.0)
    tumour_centre = centre + rng.uniform(-0.12, 0.12, size=3) * np.array(shape)
    radius = 0.22 * min(shape[:2])
    dist = np.sqrt(((grid - tumour_centre) ** 2).sum(-1))
    classes = np.zeros(shape, dtype=np.uint8)
    classes[(dist <= radius) & brain] = 2
    classes[dist <= 0.65 * radius] = 3
    classes[dist <= 0.4 * radius] = 1
    image[..., 3] += np.where(classes > 0, 80.0, 0.0)  # tumour is bright on FLAIR
    return image, classes


def lesion_perturbations(classes: np.ndarray) -> dict[str, np.ndarray]:
    """Predictions made from a reference class map (0..3, ET = 3) for the lesion-wise metric tests.

    ``identity``; ``shifted`` (rolled 2, -3, 1 voxels); ``eroded`` (each nested region eroded by one
    voxel); ``missed_small`` (the smallest component of the first region with several -- WT, TC,
    ET -- removed: WT voxels to background, TC/ET voxels to edema; absent when every region is one
    lesion); ``false_positive`` (an enhancing ball of radius 3 added where it is farthest from the
    tumour); ``empty``. Also used by benchmarks/make_lesion_reference.py, which stores the official
    package's values for them.
    """
    from scipy import ndimage

    from brats_seg.data.labels import REGIONS

    classes = np.asarray(classes, dtype=np.uint8)
    out = {"identity": classes.copy(), "shifted": np.roll(classes, (2, -3, 1), axis=(0, 1, 2))}
    cross = ndimage.generate_binary_structure(3, 1)
    et = ndimage.binary_erosion(classes == 3, cross)
    tc = ndimage.binary_erosion(np.isin(classes, (1, 3)), cross) | et
    wt = ndimage.binary_erosion(classes > 0, cross) | tc
    eroded = np.zeros_like(classes)
    eroded[wt], eroded[tc], eroded[et] = 2, 1, 3
    out["eroded"] = eroded
    for region, labels in REGIONS.items():
        components, n = ndimage.label(np.isin(classes, labels), structure=np.ones((3, 3, 3)))
        if n >= 2:
            sizes = np.bincount(components.ravel())[1:]
            missed = classes.copy()
            missed[components == int(np.argmin(sizes)) + 1] = 0 if region == "WT" else 2
            out["missed_small"] = missed
            break
    inner = np.zeros(classes.shape, dtype=bool)
    inner[8:-8, 8:-8, 8:-8] = True
    distance = ndimage.distance_transform_edt(classes == 0)
    centre = np.unravel_index(int(np.argmax(np.where(inner, distance, -1))), classes.shape)
    grid = np.ogrid[tuple(slice(0, n) for n in classes.shape)]
    ball = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= 9

    blob = classes.copy()
    blob[ball] = 3
    out["false_positive"] = blob
    out["empty"] = np.zeros_like(classes)
    return out


def run_python(
    *args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run this Python on ARGS (a script, ``-c CODE`` or ``-m MODULE`` and their arguments) in a
    subprocess, its output captured as text, ``env`` added to this environment: the one way the
    tests start a process of the installed package."""
    return subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600):
    """Run `python -m brats_seg ARGS` in a subprocess (in-process, Hydra's logging setup would take
    over pytest's captured streams)."""
    return run_python("-m", "brats_seg", *args, cwd=cwd, env=env, timeout=timeout)


# A narrow U-Net keeps training runs to seconds; the full-size models are checked in
# test_models.py.
SMALL_UNET = ["model.filters=[8,16,32,64]", "model.bridge_filters=128"]


# The smallest real run: the tiny synthetic cases (debug=tiny), SMALL_UNET, one epoch, float32 (a
# mixed_bfloat16 model would not round-trip an export exactly).
TINY_RUN = ["debug=tiny", *SMALL_UNET, "trainer.epochs=1", "trainer.precision=float32"]


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="session")
def tiny_trained_run(tmp_path_factory) -> Iterator[Path]:
    """A completed run of TINY_RUN, trained once per test session, for tests that need some
    completed run. Read it only: a test that changes a run (or evaluates it again) copies it first
    (shutil.copytree). At the end of the session the folder must be as it was trained."""
    out = tmp_path_factory.mktemp("tiny-trained") / "outputs"
    out.mkdir()
    # a plain folder name: the default one holds characters Hydra's grammar refuses unquoted in run=
    run = out / "run"
    result = run_cli(
        "train",
        *TINY_RUN,
        f"paths.output_root={out}",
        f"hydra.run.dir={run}",
        cwd=out.parent,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    trained = _files(run)
    yield run
    assert _files(run) == trained, f"a test changed the shared run {run}: copy it first"


def only_run_dir(out: Path) -> Path:
    runs = [p for p in (out / "tiny-runs").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def history_epochs(run_dir: Path) -> list[int]:
    path = run_dir / "history.csv"
    if not path.exists():
        return []
    with path.open() as f:
        return [int(row["epoch"]) for row in csv.DictReader(f) if row.get("epoch", "").isdigit()]


# A small BraTS-like data set on disk, and ways of damaging one of its cases (each returns the
# damaged file or folder).
SHAPE = (32, 32, 16)
CASES = ["Brats18_A_1", "Brats18_B_1", "Brats18_C_1", "Brats18_D_1"]


def make_root(root: Path, shape=SHAPE) -> Path:
    """Four patients plus a 2023-named copy of the first one."""
    for i, case_id in enumerate(CASES):
        image, classes = blob_case(shape, seed=i)
        write_case(root / case_id, case_id, image, classes)
    image, classes = blob_case(shape, seed=0)
    write_case(
        root / "BraTS-GLI-00009-000",
        "BraTS-GLI-00009-000",
        image,
        classes,
        convention="brats2023",
        seg_dtype=np.float32,
    )
    return root


def data_cfg(root: Path, cache_dir: Path, **overrides) -> dict:
    """A ``data`` node as composition gives it: configs/data/brats.yaml's values (their one home),
    with small-test settings and ``overrides`` (dotted keys) on top."""
    from brats_seg.config import group_defaults

    cfg = group_defaults("data", "brats")
    cfg.update(root=str(root), cache_dir=str(cache_dir), workers=1)
    cfg["preprocess"]["crop"]["size"] = [16, 16]
    cfg["selection"]["threshold"] = 20
    cfg["split"]["seed"] = 0
    for key, value in overrides.items():
        node = cfg
        *parents, last = key.split(".")
        for parent in parents:
            node = node[parent]
        node[last] = value
    return cfg


def augment_cfg(**changes) -> dict:
    """``data.augment`` as configs/data/brats.yaml sets it, with ``changes``."""
    from brats_seg.config import group_defaults

    return {**group_defaults("data", "brats")["augment"], **changes}


def preprocess_settings(**changes):
    """The PreprocessSettings of configs/data/brats.yaml, with ``changes`` (field names)."""
    from dataclasses import replace

    from brats_seg.data.settings import PreprocessSettings

    return replace(PreprocessSettings.default(), **changes)


def leftovers(cache_dir: Path) -> list[Path]:
    """Anything a failed build may have left: cache folders, temporary folders, arrays, metas."""
    if not cache_dir.exists():
        return []
    return [p for p in cache_dir.rglob("*") if p.parent.name != "locks" and p.name != "locks"]


def break_truncate(root: Path) -> Path:
    path = root / "Brats18_C_1" / "Brats18_C_1_t1ce.nii.gz"
    path.write_bytes(path.read_bytes()[:300])
    return path


def break_label5(root: Path) -> Path:
    path = root / "Brats18_D_1" / "Brats18_D_1_seg.nii.gz"
    labels = to_convention(blob_case(SHAPE, seed=3)[1], "brats2021")
    labels[3, 3, 3] = 5
    write_nifti(path, labels)
    return path


def break_shape(root: Path) -> Path:
    path = root / "Brats18_B_1" / "Brats18_B_1_t2.nii.gz"
    write_nifti(path, np.ones((32, 30, 16), np.int16))
    return path


def break_nan(root: Path) -> Path:
    path = root / "Brats18_B_1" / "Brats18_B_1_flair.nii.gz"
    flair = blob_case(SHAPE, seed=1)[0][..., 3]
    flair[1, 2, 3] = np.nan
    write_nifti(path, flair)
    return path


def break_affine(root: Path) -> Path:
    path = root / "Brats18_A_1" / "Brats18_A_1_t2.nii.gz"
    write_nifti(
        path, blob_case(SHAPE, seed=0)[0][..., 2].astype(np.int16), affine=np.diag([2.0, 1, 1, 1])
    )
    return path


def break_missing_t2(root: Path) -> Path:
    path = root / "Brats18_C_1" / "Brats18_C_1_t2.nii.gz"
    path.unlink()
    return root / "Brats18_C_1"


def record_config_edit(run_dir: Path, edit) -> None:
    """Apply ``edit(cfg)`` to a copied run's config.yaml and record the edited config's hash in its
    run.json, as a run trained with that configuration would have: runs that differ in one setting,
    without training each."""
    from omegaconf import OmegaConf

    from brats_seg.runfolder import RunFolder, config_hash

    folder = RunFolder(run_dir)
    cfg = OmegaConf.load(folder.config_path)
    edit(cfg)
    OmegaConf.save(cfg, folder.config_path)
    folder.update(config_hash=config_hash(OmegaConf.to_container(cfg, resolve=True)))
