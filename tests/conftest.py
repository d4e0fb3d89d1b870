"""Shared fixtures. The real BraTS cases are read from ../shared/data/brats-real beside the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("BRATS_SEG_REAL_DATA", REPO_ROOT.parent / "shared" / "data" / "brats-real"))


@pytest.fixture(scope="session")
def real_data_root() -> Path:
    if not (REAL_DATA / "BraTS2021_00000").is_dir():
        pytest.skip(f"real BraTS cases not found at {REAL_DATA} (set BRATS_SEG_REAL_DATA)")
    return REAL_DATA
