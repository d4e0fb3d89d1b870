"""A slice cache build stopped by SIGTERM (through the CLI's handler, as `brats-seg` installs it) or
killed outright (SIGKILL) resumes: the next build keeps the case entries the stopped one finished
and builds only the rest, into the same cache a build from scratch gives."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from brats_seg.data import nifti
from brats_seg.data.dataset import PreparedData, prepare_data

from conftest import CASES, data_cfg, make_root

FILES_PER_CASE = 5  # four modalities and the seg
ALL_CASES = sorted(CASES + ["BraTS-GLI-00009-000"])


def _finished(cache_dir: Path) -> list[Path]:
    """The complete entries (meta.json is written last) of every build folder under
    ``cache_dir``."""
    return sorted(cache_dir.glob(".building-*/cases/*/meta.json"))


def _slow_build(cfg: dict) -> None:
    """A build whose cases take long enough that the test can kill it between two of them, with
    SIGTERM turned into an exception as the brats-seg command does."""
    import threading

    from tqdm import tqdm

    from brats_seg.cli import _terminate_as_exception
    from brats_seg.data import cache

    # tqdm's write lock is a semaphore shared with the forking pytest process: a child killed
    # while it draws its bar would leave the lock held and the next bar in pytest waiting forever.
    tqdm.set_lock(threading.RLock())
    _terminate_as_exception()

    build = cache.build_case_entry

    def slowly(*args, **kwargs):
        time.sleep(0.4)
        return build(*args, **kwargs)

    cache.build_case_entry = slowly
    prepare_data(cfg)


def _kill_after(
    cfg: dict, cache_dir: Path, finished: int, signum: int = signal.SIGKILL
) -> list[Path]:
    """Start a build in a child process, send it ``signum`` once ``finished`` case entries are
    complete, and return the complete entries it left."""
    child = multiprocessing.get_context("fork").Process(target=_slow_build, args=(cfg,))
    child.start()
    deadline = time.monotonic() + 120
    while len(_finished(cache_dir)) < finished and time.monotonic() < deadline:
        assert child.is_alive(), "the build ended before it could be killed"
        time.sleep(0.02)
    os.kill(child.pid, signum)
    child.join(timeout=30)
    # SIGTERM ends the child by the Terminated exception it raised (exit status 1)
    assert child.exitcode == (-signal.SIGKILL if signum == signal.SIGKILL else 1)
    return _finished(cache_dir)


def _stamps(entries: list[Path]) -> dict[str, tuple[int, int]]:
    """case id -> (inode, mtime in ns) of its x.npy: any rewrite changes them."""
    stamps = {}
    for meta in entries:
        stat = (meta.parent / "x.npy").stat()
        stamps[meta.parent.name] = (stat.st_ino, stat.st_mtime_ns)
    return stamps


def _assert_same_cache(resumed: PreparedData, fresh: PreparedData) -> None:
    assert resumed.case_ids == fresh.case_ids == ALL_CASES
    for case_id in ALL_CASES:
        assert resumed.case_meta(case_id)["selected"] == fresh.case_meta(case_id)["selected"]
        for a, b in zip(resumed.read_slices(case_id), fresh.read_slices(case_id), strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_build_resumes_without_rebuilding_finished_cases(tmp_path, signum):
    root = make_root(tmp_path / "data")
    cache_dir = tmp_path / "cache"
    cfg = data_cfg(root, cache_dir)
    left = _kill_after(cfg, cache_dir, finished=2, signum=signum)
    assert 2 <= len(left) < len(ALL_CASES), left
    stamps = _stamps(left)

    before = nifti.decode_count()
    resumed = prepare_data(cfg)
    # Only the cases the killed build had not finished are decoded again.
    assert nifti.decode_count() - before == FILES_PER_CASE * (len(ALL_CASES) - len(left))
    kept = {c: (resumed.cache_dir / "cases" / c / "x.npy").stat() for c in stamps}
    assert {c: (s.st_ino, s.st_mtime_ns) for c, s in kept.items()} == stamps
    assert not list(cache_dir.glob(".building-*"))
    _assert_same_cache(resumed, prepare_data(data_cfg(root, tmp_path / "fresh")))


def test_a_half_written_entry_is_rebuilt_and_the_finished_ones_kept(tmp_path):
    """The kill can land while an entry's arrays are written: without its meta.json it is built
    again, whatever it holds."""
    root = make_root(tmp_path / "data")
    cache_dir = tmp_path / "cache"
    cfg = data_cfg(root, cache_dir)
    left = _kill_after(cfg, cache_dir, finished=3)
    half, whole = left[0].parent, left[1:]
    (half / "meta.json").unlink()
    x = half / "x.npy"
    x.write_bytes(x.read_bytes()[: x.stat().st_size // 2])
    stamps = _stamps(whole)

    before = nifti.decode_count()
    resumed = prepare_data(cfg)
    assert nifti.decode_count() - before == FILES_PER_CASE * (len(ALL_CASES) - len(whole))
    kept = {c: (resumed.cache_dir / "cases" / c / "x.npy").stat() for c in stamps}
    assert {c: (s.st_ino, s.st_mtime_ns) for c, s in kept.items()} == stamps
    _assert_same_cache(resumed, prepare_data(data_cfg(root, tmp_path / "fresh")))
