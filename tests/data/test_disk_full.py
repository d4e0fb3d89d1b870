"""A full disk while the slice cache is written: one line saying the disk is full and naming the
file, and no partial cache left. The disk is a real 64 KiB tmpfs (mounting needs root; without it
the test is skipped, saying so)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import run_cli


@pytest.fixture
def tiny_disk(tmp_path) -> Path:
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a 64 KiB tmpfs here ({mounted.stderr.strip()}); needs root")
    yield where
    subprocess.run(["umount", str(where)], check=True)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Two cases whose cached slices (several 100 KB) do not fit the 64 KiB disk."""
    path = tmp_path_factory.mktemp("full") / "root"
    done = run_cli("synth", f"out={path}", "cases=2", "shape=[96,96,64]")
    assert done.returncode == 0, done.stderr[-2000:]
    return path


@pytest.mark.parametrize("workers", [1, 2])
def test_a_full_disk_says_so_names_the_file_and_leaves_no_cache(root, tiny_disk, tmp_path, workers):
    result = run_cli(
        "eda",
        "data=brats",
        f"data.root={root}",
        "data.selection.rule=tumour",
        f"data.workers={workers}",
        f"data.cache_dir={tiny_disk}",
        f"out={tmp_path / 'eda'}",
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "the disk is full" in line and str(tiny_disk) in line, line
    assert "requested and" not in line
    left = [p.name for p in tiny_disk.iterdir() if p.name != "locks"]
    assert left == [], f"a partial cache was left: {left}"
