"""On-disk cache of preprocessed, selected slices of one plane (for training) and of whole volumes
(for evaluation).

Layout under ``data.cache_dir``::

    <name>-<key>/                  one data set + one set of preprocessing/selection settings
        index.json                 settings, root, every case's meta (written last: its presence
                                   marks a complete cache)
        cases/<case_id>/x.npy      (N_selected, H, W, C) float16, memory-mappable
        cases/<case_id>/y.npy      (N_selected, H, W) uint8 classes
        cases/<case_id>/meta.json  case id, convention, files, fingerprint, crop box, shapes,
                                   spacing, affine, selected slice indices, class pixel counts over
                                   the selected slices
        volumes/<case_id>/         filled lazily by load_volume(): x.npy (Z, H, W, C) float16,
                                   classes.npy (X, Y, Z)
    locks/<name>-<key>.lock        serialises builders of the same key (two sweep jobs)

The key hashes, per case, its id, convention and every file's absolute path and the sha256 of
its bytes (streamed, no decoding; a file edited with its size and mtime kept is noticed), plus the
effective preprocessing (``data.plane`` included: each plane has its own cache), label and selection
settings, the cache format and PREPROCESS_VERSION, the version of the code's output that
tests/data/test_preprocess_version.py ties to a fixed case.
A cache is built in the hidden folder ``.building-<name>-<key>`` beside it and renamed into place
only when every case succeeded. A build that fails (a bad case, a full disk) is removed; one
stopped (SIGTERM, Ctrl-C) or killed outright (SIGKILL, a lost node) leaves that folder, and the next
build of the same key keeps its finished case entries (those whose meta.json, written last, is there
and whose arrays match their headers) and builds the rest.
Its arrays are checked against their headers each time it is opened: a truncated or missing file (a
full disk, a killed copy) is reported on one line and that case's entry rebuilt; likewise a volume.

Worker processes import no TensorFlow themselves. They are forked (fast, inherits the imported
modules) unless the parent has already imported TensorFlow, whose thread pools make ``fork`` unsafe;
then ``forkserver`` is used (its children re-import the main module, so a main script should not
import TensorFlow at top level; the ``brats-seg`` entry point does not).
"""

from __future__ import annotations

import errno
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterable
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path
from typing import NamedTuple

import numpy as np

from brats_seg.atomic import atomic_dir, replace_dir, write_json
from brats_seg.data import nifti
from brats_seg.data.discovery import MODALITIES, CaseFiles
from brats_seg.data.labels import LabelRules
from brats_seg.data.preprocess import PREPROCESS_VERSION, preprocess_case
from brats_seg.data.selection import class_pixel_counts, select_slices
from brats_seg.data.settings import PreprocessSettings, SelectionSettings
from brats_seg.data.split import content_fingerprint
from brats_seg.errors import DataError

FORMAT_VERSION = 1
# float16 halves disk and read traffic; normalised intensities need no more precision. Volumes read
# back for evaluation go through the same rounding, so a rerun sees exactly the same input as the
# first run.
X_DTYPE = np.float16
INDEX_FILE = "index.json"


class Volume(NamedTuple):
    x: np.ndarray  # (S, H, W, C) float32, every slice of the plane, preprocessed (cropped if on)
    classes: np.ndarray  # (X, Y, Z) uint8 classes at full size
    meta: dict


# ------------------------------------------------------------------------------------ key and index


def cache_key(
    cases: Iterable[CaseFiles],
    preprocess: PreprocessSettings,
    selection: SelectionSettings,
    labels: LabelRules | None = None,
) -> str:
    """16 hex digits identifying the data (file contents) and the settings that shape the cache."""
    payload = {
        "format": FORMAT_VERSION,
        "preprocess_version": PREPROCESS_VERSION,
        "x_dtype": np.dtype(X_DTYPE).name,
        "preprocess": preprocess.as_dict(),
        "selection": selection.as_dict(),
        "labels": (labels or LabelRules.default()).as_dict(),
        "cases": [
            [c.case_id, c.convention, [_file_identity(p) for p in c.files]]
            for c in sorted(cases, key=lambda c: c.case_id)
        ],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _file_identity(path: Path) -> list:
    return [str(path.resolve()), file_sha256(path)]


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror})") from None
    return digest.hexdigest()


def read_index(cache_path: Path) -> dict:
    path = cache_path / INDEX_FILE
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as err:
        raise DataError(
            f"{path}: damaged cache index ({type(err).__name__}); delete {cache_path} to rebuild it"
        ) from None


def npy_damage(path: Path) -> str | None:
    """Why a ``.npy`` file cannot be what its header says (missing, unreadable header, wrong
    length), or None."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(fh)
            offset = fh.tell()
        size = os.path.getsize(path)
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError) as err:
        return f"unreadable header ({type(err).__name__})"
    expected = offset + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if size != expected:
        return f"{size} bytes where its header needs {expected}"
    return None


def damaged_entries(cache_path: Path, case_ids: Iterable[str]) -> dict[str, tuple[Path, str]]:
    """``{case_id: (first damaged file, why)}`` over the slice arrays of ``case_ids``."""
    damaged = {}
    for case_id in case_ids:
        for name in ("x.npy", "y.npy"):
            path = case_dir(cache_path, case_id) / name
            why = npy_damage(path)
            if why:
                damaged[case_id] = (path, why)
                break
    return damaged


def is_complete(cache_path: Path) -> bool:
    return (cache_path / INDEX_FILE).is_file()


def case_dir(cache_path: Path, case_id: str) -> Path:
    return cache_path / "cases" / case_id


def write_case_entry(cache_path: Path, meta: dict, x: np.ndarray, y: np.ndarray) -> None:
    """Write one case's selected slices and meta (into a folder that is not yet visible to
    readers)."""
    folder = case_dir(cache_path, meta["case_id"])
    target = folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "x.npy"
        np.save(target, np.ascontiguousarray(x, dtype=X_DTYPE))
        target = folder / "y.npy"
        np.save(target, np.ascontiguousarray(y, dtype=np.uint8))
        target = folder / "meta.json"
        write_json(target, meta)
    except OSError as err:
        if is_disk_full(err, folder):
            raise DataError(
                f"{target}: the disk is full ({_free_words(folder)}) while the slice cache was "
                "written; free some space or point data.cache_dir at a disk with room; "
                "nothing of this cache was kept"
            ) from err
        raise


def is_disk_full(err: OSError, folder: Path) -> bool:
    """Whether a failed write ran out of space. numpy's tofile reports a short write as
    "N requested and M written" with no errno, so the free space decides then."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if err.errno is None and "requested and" in str(err):
        return True
    try:
        return shutil.disk_usage(_existing(folder)).free == 0
    except OSError:
        return False


def _free_words(folder: Path) -> str:
    try:
        usage = shutil.disk_usage(_existing(folder))
    except OSError:
        return "free space unknown"
    return f"{usage.free} of {usage.total} bytes free on its file system"


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def write_index(cache_path: Path, index: dict) -> None:
    write_json(cache_path / INDEX_FILE, index)


# -------------------------------------------------------------------------------------------- build


def build_cache(
    cache_dir: Path,
    name: str,
    root: Path,
    cases: list[CaseFiles],
    preprocess: PreprocessSettings,
    selection: SelectionSettings,
    workers: int = 1,
    labels: LabelRules | None = None,
) -> Path:
    """Return the complete cache folder for these cases and settings, building it first if needed
    (and rebuilding any case entry whose arrays are damaged)."""
    cache_dir = Path(cache_dir).resolve()
    key = cache_key(cases, preprocess, selection, labels)
    final = cache_dir / f"{name}-{key}"
    if is_complete(final) and not damaged_entries(final, [c.case_id for c in cases]):
        return final
    from filelock import FileLock, Timeout

    (cache_dir / "locks").mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(cache_dir / "locks" / f"{final.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"brats-seg: waiting for another process building {final}", file=sys.stderr)
        lock.acquire()
    try:
        if is_complete(final):
            _repair_locked(final, cases, preprocess, selection, labels)
            return final
        try:
            _build_locked(
                cache_dir,
                final,
                name,
                root,
                key,
                cases,
                preprocess,
                selection,
                workers,
                labels,
            )
        except OSError as err:
            if not is_disk_full(err, cache_dir):
                raise
            raise DataError(
                f"{final}: the disk is full ({_free_words(cache_dir)}) while the slice cache was "
                "written; free some space or point data.cache_dir at a disk with room; "
                "nothing of this cache was kept"
            ) from err
    finally:
        lock.release()
    return final


def _repair_locked(
    final: Path,
    cases: list[CaseFiles],
    preprocess: PreprocessSettings,
    selection: SelectionSettings,
    labels: LabelRules,
) -> None:
    """Rebuild, one by one, the case entries whose arrays are damaged (the files behind the key are
    unchanged, so each entry comes out as it was)."""
    by_id = {c.case_id: c for c in cases}
    for case_id, (path, why) in sorted(damaged_entries(final, list(by_id)).items()):
        print(
            f"brats-seg: warning: {path}: damaged cache file ({why}); rebuilding case {case_id}",
            file=sys.stderr,
        )
        with atomic_dir(case_dir(final, case_id), prefix=f".rebuild-{case_id}-") as tmp:
            build_case_entry(by_id[case_id], preprocess, selection, str(tmp), labels)
            # build_case_entry writes <out>/cases/<id>/: lift its files to the new folder's top
            built = case_dir(tmp, case_id)
            for item in built.iterdir():
                os.replace(item, tmp / item.name)
            shutil.rmtree(tmp / "cases")


def _build_locked(
    cache_dir: Path,
    final: Path,
    name: str,
    root: Path,
    key: str,
    cases: list[CaseFiles],
    preprocess: PreprocessSettings,
    selection: SelectionSettings,
    workers: int,
    labels: LabelRules,
) -> None:
    # Holding the lock, a temporary folder of this key belongs to a builder that died: those of
    # the former random-suffix naming are removed, the resumable one is taken over.
    for stale in cache_dir.glob(f".building-{final.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    partial = building_dir(final)
    done = finished_entries(partial, cases)
    if done:
        print(
            f"brats-seg: resuming the interrupted build of {final}: {len(done)} of {len(cases)} "
            "case(s) already cached",
            file=sys.stderr,
        )
    partial.mkdir(parents=True, exist_ok=True)
    try:
        todo = [c for c in cases if c.case_id not in done]
        metas = list(done.values()) + _build_entries(
            todo, preprocess, selection, partial, workers, f"caching {name} slices", labels
        )
        warn_cut_brain(metas)
        write_index(
            partial,
            {
                "format": FORMAT_VERSION,
                "preprocess_version": PREPROCESS_VERSION,
                "key": key,
                "name": name,
                "root": str(Path(root).resolve()),
                "x_dtype": np.dtype(X_DTYPE).name,
                "preprocess": preprocess.as_dict(),
                "selection": selection.as_dict(),
                "labels": (labels or LabelRules.default()).as_dict(),
                "cases": {m["case_id"]: m for m in sorted(metas, key=lambda m: m["case_id"])},
            },
        )
        # an existing folder without index.json is not a cache (e.g. emptied by hand) and is
        # replaced
        replace_dir(partial, final)
    except KeyboardInterrupt:
        # SIGTERM (errors.Terminated) or Ctrl-C: stopped, not failed; like a SIGKILL, it leaves the
        # finished case entries for the next build of this key.
        print(
            f"brats-seg: the interrupted build of {final} keeps its finished cases; the same "
            "command resumes it",
            file=sys.stderr,
        )
        raise
    except BaseException:
        # A failure (a bad case, a full disk): nothing of this build is kept.
        shutil.rmtree(partial, ignore_errors=True)
        raise


def building_dir(final: Path) -> Path:
    """Where the cache ``final`` is built; the key in its name makes it the same for every build
    of the same cases and settings."""
    return final.parent / f".building-{final.name}"


def finished_entries(partial: Path, cases: list[CaseFiles]) -> dict[str, dict]:
    """``{case_id: meta}`` of the complete case entries in a build folder left by a killed
    builder; a half-written entry is removed."""
    done: dict[str, dict] = {}
    if not partial.is_dir():
        return done
    for case in cases:
        folder = case_dir(partial, case.case_id)
        if not folder.exists():
            continue
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = None
        complete = (
            isinstance(meta, dict)
            and meta.get("case_id") == case.case_id
            and not damaged_entries(partial, [case.case_id])
        )
        if complete:
            done[case.case_id] = meta
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return done


def _build_entries(
    cases: list[CaseFiles],
    preprocess: PreprocessSettings,
    selection: SelectionSettings,
    out: Path,
    workers: int,
    desc: str,
    labels: LabelRules,
) -> list[dict]:
    from tqdm import tqdm

    workers = max(1, min(workers, len(cases)))
    with tqdm(total=len(cases), desc=desc, unit="case", file=sys.stderr, dynamic_ncols=True) as bar:
        if workers == 1:
            metas = []
            for case in cases:
                meta, _ = build_case_entry(case, preprocess, selection, str(out), labels)
                metas.append(meta)
                bar.update()
            return metas
        return _build_in_pool(cases, preprocess, selection, out, workers, bar, labels)


def _build_in_pool(
    cases, preprocess, selection, out: Path, workers: int, bar, labels: LabelRules
) -> list[dict]:
    metas = []
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=worker_context(),
        initializer=end_with_parent,
        initargs=(os.getpid(),),
    )
    try:
        pending = {
            pool.submit(build_case_entry, case, preprocess, selection, str(out), labels)
            for case in cases
        }
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                meta, decodes = future.result()  # re-raises a worker's DataError
                nifti.record_decodes(decodes)
                metas.append(meta)
                bar.update()
    except BaseException:
        # A failed case, SIGTERM or Ctrl-C (from submitting on): stop the workers now rather than
        # let them finish their cases into a folder that is about to be removed.
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return metas


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)


def end_with_parent(parent_pid: int) -> None:
    """Initializer of a cache worker: die with the process that started the build.

    Linux sends the worker SIGKILL when its parent ends (PR_SET_PDEATHSIG), however the parent
    ends, SIGKILL included; under forkserver the parent is the fork server, which exits as soon as
    the brats-seg process is gone. SIGTERM and SIGINT get their defaults back, so that the
    parent's handlers (which turn them into an exception) do not run inside a worker.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which ends us
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        try:
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    try:
        os.kill(parent_pid, 0)
    except ProcessLookupError:  # the parent ended before the line above took effect
        os._exit(1)


def warn_cut_brain(metas: list[dict]) -> None:
    """One warning line per case whose crop box leaves brain voxels out."""
    for meta in sorted(metas, key=lambda m: m["case_id"]):
        cut = (meta.get("crop_cut") or {}).get("brain")
        if cut:
            print(
                f"brats-seg: warning: case {meta['case_id']}: the crop box {meta['crop_box']} "
                f"cuts {cut} brain voxel(s) (no tumour)",
                file=sys.stderr,
            )


def worker_context() -> multiprocessing.context.BaseContext:
    """``fork`` while TensorFlow is not imported (cheap start); ``forkserver`` once it is (fork is
    unsafe then)."""
    return multiprocessing.get_context("forkserver" if "tensorflow" in sys.modules else "fork")


def build_case_entry(
    case: CaseFiles,
    preprocess: PreprocessSettings,
    selection: SelectionSettings,
    out: str,
    labels: LabelRules | None = None,
) -> tuple[dict, int]:
    """Decode, preprocess and select one case and write its entry; returns (meta, NIfTI decodes
    done)."""
    before = nifti.decode_count()
    loaded = nifti.load_case(case, labels)
    if loaded.seg is None:
        raise DataError(
            f"{case.folder}: case {case.case_id} has no segmentation; needed for training"
        )
    prep = preprocess_case(loaded, preprocess)
    if prep.cut_tumour:
        height, width = preprocess.crop_size
        raise DataError(
            f"case {case.case_id}: the crop {height}x{width} "
            f"(box {list(prep.crop_box)}) cuts {prep.cut_tumour} tumour voxel(s), "
            "which would be certain false "
            "negatives; set a larger data.preprocess.crop.size"
        )
    selected = select_slices(prep.y, prep.brain_pixels, selection)
    y = prep.y[selected]
    meta = {
        "case_id": case.case_id,
        "convention": case.convention,
        "folder": str(case.folder.resolve()),
        "files": case_file_map(case),
        "fingerprint": content_fingerprint(loaded.image),
        "crop_box": list(prep.crop_box) if prep.crop_box else None,
        "crop_cut": {"brain": prep.cut_brain, "tumour": prep.cut_tumour},
        "labels": (labels or LabelRules.default()).as_dict(),
        "full_shape": list(prep.full_shape),
        "slice_shape": list(prep.x.shape[1:]),
        "num_slices": int(prep.x.shape[0]),
        "spacing": list(loaded.spacing),
        "affine": loaded.affine.tolist(),
        "selected": selected.tolist(),
        "class_counts": class_pixel_counts(y).sum(axis=0).tolist(),
    }
    write_case_entry(Path(out), meta, prep.x[selected], y)
    return meta, nifti.decode_count() - before


def case_file_map(case: CaseFiles) -> dict[str, str | None]:
    files: dict[str, str | None] = {m: str(case.images[m].resolve()) for m in MODALITIES}
    files["seg"] = str(case.seg.resolve()) if case.seg is not None else None
    return files


def case_from_meta(meta: dict) -> CaseFiles:
    files = meta["files"]
    images = {m: Path(files[m]) for m in MODALITIES}
    seg = Path(files["seg"]) if files.get("seg") else None
    return CaseFiles(meta["case_id"], Path(meta["folder"]), images, seg, meta["convention"])


# ------------------------------------------------------------------------------------------ reading


class NpyRows:
    """Row access to a ``.npy`` file through ``os.pread``.

    Unlike a memory map, reading every row of a large split does not leave the file's pages mapped
    into the process, so streaming an epoch keeps the resident memory flat whatever the data set's
    size.
    """

    def __init__(self, path: Path):
        self.path = path
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            self.offset = fh.tell()
        if fortran:
            raise DataError(
                f"{path}: unexpected Fortran-ordered array in the cache; delete the cache folder"
            )
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def read_rows(self, rows: Iterable[int], out: np.ndarray) -> None:
        """Read ``rows`` into consecutive entries of ``out`` (converted to ``out.dtype``)."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for i, row in enumerate(rows):
                raw = os.pread(fd, self.row_bytes, self.offset + int(row) * self.row_bytes)
                if len(raw) != self.row_bytes:
                    raise DataError(f"{self.path}: truncated cache file; delete the cache folder")
                out[i] = np.frombuffer(raw, dtype=self.dtype).reshape(self.shape[1:])
        finally:
            os.close(fd)


class SliceReader:
    """Reads batches of (case, row) slices of a cache without loading whole cases."""

    def __init__(self, cache_path: Path, case_ids: list[str]):
        self.case_ids = list(case_ids)
        self._x = [NpyRows(case_dir(cache_path, c) / "x.npy") for c in self.case_ids]
        self._y = [NpyRows(case_dir(cache_path, c) / "y.npy") for c in self.case_ids]

    def read(self, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``pairs`` (B, 2) of (position in case_ids, row) -> x (B, H, W, C) float32, y (B, H, W)
        uint8."""
        pairs = np.asarray(pairs)
        x = np.empty((len(pairs),) + self._x[0].shape[1:], dtype=np.float32)
        y = np.empty((len(pairs),) + self._y[0].shape[1:], dtype=np.uint8)
        for case in np.unique(pairs[:, 0]):
            where = np.flatnonzero(pairs[:, 0] == case)
            rows = pairs[where, 1]
            xs = np.empty((len(where),) + x.shape[1:], dtype=np.float32)
            ys = np.empty((len(where),) + y.shape[1:], dtype=np.uint8)
            self._x[case].read_rows(rows, xs)
            self._y[case].read_rows(rows, ys)
            x[where], y[where] = xs, ys
        return x, y


def read_slices(cache_path: Path, case_id: str) -> tuple[np.ndarray, np.ndarray]:
    """A case's selected slices as read-only memory maps: x (N, H, W, C) float16, y (N, H, W)
    uint8."""
    folder = case_dir(cache_path, case_id)
    return _load_npy(folder / "x.npy"), _load_npy(folder / "y.npy")


def _load_npy(path: Path) -> np.ndarray:
    why = npy_damage(path)
    if why:
        raise DataError(
            f"{path}: damaged cache file ({why}); run the command again to rebuild "
            f"it, or delete {path.parent.parent.parent}"
        )
    try:
        return np.load(path, mmap_mode="r")
    except ValueError:  # numpy cannot memory-map an array with no elements
        return np.load(path)


# ------------------------------------------------------------------------------------------ volumes


def load_volume(cache_path: Path, meta: dict, preprocess: PreprocessSettings) -> Volume:
    """A case's whole preprocessed volume; decoded from NIfTI on first use, then read from the
    cache."""
    folder = cache_path / "volumes" / meta["case_id"]
    if folder.is_dir():
        files = (folder / "x.npy", folder / "classes.npy")
        damage = [(path, why) for path in files if (why := npy_damage(path))]
        if not damage:
            x = np.load(folder / "x.npy").astype(np.float32)
            return Volume(x, np.load(folder / "classes.npy"), meta)
        path, why = damage[0]
        print(
            f"brats-seg: warning: {path}: damaged volume cache file ({why}); rebuilding it",
            file=sys.stderr,
        )
        shutil.rmtree(folder, ignore_errors=True)
    loaded = nifti.load_case(case_from_meta(meta), LabelRules.from_cfg(meta["labels"]))
    prep = preprocess_case(loaded, preprocess)
    x = prep.x.astype(X_DTYPE)
    _write_volume(folder, x, loaded.seg)
    return Volume(x.astype(np.float32), loaded.seg, meta)


def _write_volume(folder: Path, x: np.ndarray, classes: np.ndarray) -> None:
    # Not atomic_dir: concurrent jobs may write the same volume, and the first complete one wins.
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        try:
            np.save(tmp / "x.npy", x)
            np.save(tmp / "classes.npy", np.ascontiguousarray(classes, dtype=np.uint8))
        except OSError as err:  # e.g. a full disk: the volume is only a cache, so carry on
            why = (
                f"the disk is full, {_free_words(folder.parent)}"
                if is_disk_full(err, folder.parent)
                else err.strerror or str(err)
            )
            print(f"brats-seg: warning: {folder}: volume not cached ({why})", file=sys.stderr)
            return
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "classes.npy").is_file():  # not a concurrent writer winning the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
