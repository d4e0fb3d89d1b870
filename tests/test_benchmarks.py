"""The benchmark scripts stay runnable.

Each runs in its tiny mode and passes its (tiny-mode) floors.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_python

# Benchmarks, even in their tiny mode.
pytestmark = pytest.mark.slow

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_tiny(script: str, cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_python(BENCHMARKS / script, "--tiny", *extra, cwd=cwd)


@pytest.mark.parametrize("script", ["bench_data.py", "bench_metrics.py"])
def test_benchmark_runs_in_tiny_mode(script, tmp_path):
    result = run_tiny(script, tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "floor" in (result.stdout + result.stderr).lower()


def test_train_benchmark_reports_each_mode(tmp_path):
    # No time budget: on a busy machine it could leave predict out.
    result = run_tiny("bench_train.py", tmp_path, "--rounds", "2", "--budget-min", "0")
    out = result.stdout
    assert result.returncode == 0, out[-2000:] + result.stderr[-2000:]
    lines = out.splitlines()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.read_text().splitlines()
            if ln.startswith("model name")
        ]
        if names:
            assert names[0] in lines[0]
    assert "cores" in lines[0] and "TensorFlow" in lines[0] and "Keras" in lines[0]
    # Every parameter count agrees (the parent checks it), and it is the tiny U-Net's.
    assert "485,916 parameters in every mode" in out
    has_torch = importlib.util.find_spec("torch") is not None
    modes = ["study", "ours"] + (["torch"] if has_torch else [])
    for mode in modes:
        line = next(ln for ln in lines if ln.startswith(f"{mode}:"))
        assert "median" in line and "slices/s" in line
        values = line.split("all [", 1)[1].rstrip("]").split(", ")
        assert len(values) == 2 and all(float(v) > 0 for v in values)
    if not has_torch:
        assert "pip install '.[bench]'" in out
    predict = next(ln for ln in lines if ln.startswith("predict:"))
    assert "s per volume in the brain box" in predict and "on whole 64x64 slices" in predict
    assert "ours/study" in out and "not enforced with --tiny" in out
    assert "per probed GFLOP/s" in out
    # Keras modes: steps timed by a callback, the whole fit call reported beside them.
    for mode in ("study", "ours"):
        assert f"{mode}, the whole fit call" in out and f"CPUs kept busy by each {mode} run" in out
    # The machine's probe beside every measurement: positive GFLOP/s, one per round and training
    # mode; predict runs once, after the rounds.
    for mode in [*modes, "predict"]:
        line = next(ln for ln in lines if ln.startswith(f"CPU probe beside each {mode} run"))
        probes = line.split(": [", 1)[1].split("]", 1)[0].split(", ")
        assert len(probes) == (1 if mode == "predict" else 2) and all(float(v) > 0 for v in probes)
    # Rounds alternate the order of the modes: round 2 runs them in reverse.
    order = [ln.split()[2] for ln in result.stderr.splitlines() if ln.startswith("round ")]
    half = len(order) // 2
    assert order[:half] == order[half:][::-1] and len(set(order)) == half == len(modes)
    # How far apart the rounds were, per training mode.
    spread = next(ln for ln in lines if ln.startswith("spread of the rounds"))
    for mode in modes:
        assert f"{mode} " in spread and "% (2 round(s))" in spread
    assert "predict once after the rounds" in out and "min in all" in out


def test_train_benchmark_budget_leaves_out_what_would_not_fit(tmp_path):
    """A budget the first round already spends: later rounds and predict are left out, named in the
    report, and the run still reports and ends well."""
    result = run_tiny(
        "bench_train.py",
        tmp_path,
        "--rounds",
        "2",
        "--modes",
        "study,predict",
        "--budget-min",
        "0.01",
    )
    out = result.stdout
    assert result.returncode == 0, out[-2000:] + result.stderr[-2000:]
    assert "left out to end within --budget-min 0.01: round 2/2 study, once predict" in out
    assert "study 0.0% (1 round(s))" in out
    assert not any(ln.startswith("predict:") for ln in out.splitlines())


def test_cpu_capacity_probe_reports_alone_and_together():
    result = run_python(BENCHMARKS / "cpu_capacity.py", "--seconds", "0.2", timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["solo"] > 0 and probe["pair"] > 0
    assert probe["ratio"] == pytest.approx(probe["pair"] / probe["solo"], abs=0.01)


def test_bf16_modes_diagnosis_runs_each_condition(tmp_path):
    result = run_python(
        BENCHMARKS / "bench_bf16_modes.py",
        *("--tiny", "--processes", "1", "--steps", "2", "--conditions", "no_aslr,fit", "--kernels"),
        cwd=tmp_path,
    )
    out = result.stdout
    assert result.returncode == 0, out[-2000:] + result.stderr[-2000:]
    assert out.splitlines()[0].startswith("CPU: ")
    for condition in ("no_aslr", "fit"):
        line = next(
            ln for ln in out.splitlines() if ln.startswith(f"{condition} ") and "s/step" in ln
        )
        assert "steal" in line and "CPUs busy" in line and "CPU probe before" in line
        assert f"{condition}: per-process medians [" in out
    # ONEDNN_VERBOSE=1 counts the oneDNN kernels that ran (TensorFlow's CPU build uses oneDNN).
    assert "kernels: {" in out


def test_scale_benchmark_small_setting_reports_the_table_and_the_full_brats(tmp_path):
    work = tmp_path / "work"
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_scale.py"), "--small", "--work", str(work)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = result.stdout
    assert result.returncode == 0, out[-2000:] + result.stderr[-2000:]
    lines = out.splitlines()
    assert lines[0].startswith("CPU: ") and "recipe=real_cpu" in lines[0]
    header = next(i for i, ln in enumerate(lines) if ln.split()[:1] == ["N"])
    table = [ln.split() for ln in lines[header + 1 : header + 3]]
    rows = {int(cells[0]): [float(v) for v in cells[1:]] for cells in table}
    assert sorted(rows) == [2, 4]
    for values in rows.values():
        assert all(v > 0 for v in values), values
    assert rows[4][-1] > rows[2][-1]  # more cases, more training slices
    assert "training slices/s" in next(ln for ln in lines if ln.startswith("recipe model: "))
    assert any(ln.startswith("extrapolated to 1251 cases") for ln in lines)
    for label in ("build RSS", "build worker RSS", "epoch RSS", "input pipeline / recipe model"):
        line = next(ln for ln in lines if ln.startswith(label))
        assert "floor" in line and "not enforced with --small" in line
    # The cases are kept in --work for the next run; each N's cache is removed after it.
    kept = json.loads((work / "cases-64x64x48" / "dataset.json").read_text())
    assert kept["cases"] == 4 and kept["shape"] == [64, 64, 48]
    assert sorted(p.name for p in work.iterdir()) == ["cases-64x64x48"]
