"""The benchmark scripts stay runnable.

Each runs in its tiny mode and passes its (tiny-mode) floors.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Benchmarks, even in their tiny mode.
pytestmark = pytest.mark.slow

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.mark.parametrize("script", ["bench_data.py", "bench_metrics.py", "bench_train.py"])
def test_benchmark_runs_in_tiny_mode(script, tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / script), "--tiny"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "floor" in (result.stdout + result.stderr).lower()
