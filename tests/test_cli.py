"""The brats-seg command: dispatch, help without TensorFlow, errors, and configs found from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from brats_seg.cli import COMMANDS, main

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600):
    return subprocess.run([sys.executable, "-m", "brats_seg", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def test_help_lists_every_command_and_does_not_import_tensorflow():
    code = "import sys, brats_seg.cli as c; c.main(['--help']); print('tensorflow' in sys.modules, 'hydra' in sys.modules)"
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - start
    for name in COMMANDS:
        assert name in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "False False"
    assert elapsed < 5  # generous: the interpreter alone starts in ~0.05 s; TensorFlow would take seconds


def test_unknown_command_exits_2_with_usage(capsys):
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'frobnicate'" in err and "usage: brats-seg" in err


def test_unknown_option_is_hydras_clear_error(tmp_path):
    result = run_cli("train", "trainer.no_such_option=3", "--cfg", "job", cwd=tmp_path)
    assert result.returncode != 0
    assert "no_such_option" in result.stderr and "Traceback" not in result.stderr


def test_unknown_config_group_option_is_a_clear_error(tmp_path):
    result = run_cli("train", "model=no_such_model", "--cfg", "job", cwd=tmp_path)
    assert result.returncode != 0
    assert "no_such_model" in result.stderr and "Traceback" not in result.stderr


def test_pyproject_lists_every_subpackage():
    import tomllib

    listed = set(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    src = REPO_ROOT / "src"
    found = {".".join(p.parent.relative_to(src).parts) for p in src.rglob("__init__.py")}
    assert found | {"brats_seg.configs"} == listed


def test_installed_command_finds_configs_from_any_directory(tmp_path):
    """A non-editable install into a scratch folder, run from an unrelated directory, composes the real configs."""
    import shutil

    # Install from a copy: pip builds in the source tree, and a build/ folder left in the repository could leak
    # stale files into a later wheel.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    for name in ("src", "configs"):
        shutil.copytree(REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(source)],
                   check=True, capture_output=True, text=True, timeout=600)
    assert (site / "brats_seg" / "configs" / "train.yaml").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(site)}
    which = subprocess.run([sys.executable, "-c", "import brats_seg; print(brats_seg.__file__)"], cwd=elsewhere,
                           env={**os.environ, **env}, capture_output=True, text=True, check=True)
    assert which.stdout.strip().startswith(str(site))
    result = subprocess.run([str(site / "bin" / "brats-seg"), "train", "--cfg", "job"], cwd=elsewhere,
                            env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "model:" in result.stdout and "name: unet" in result.stdout
    assert not (elsewhere / "outputs").exists()  # --cfg job prints, it does not run
