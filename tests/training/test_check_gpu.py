"""scripts/check_gpu.py: the config it trains is the one `brats-seg train` composes; without a GPU
it says so."""

from __future__ import annotations

import importlib.util

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import REPO_ROOT, run_cli, run_python

SCRIPT = REPO_ROOT / "scripts" / "check_gpu.py"


def _script():
    spec = importlib.util.spec_from_file_location("check_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_its_config_is_what_brats_seg_train_composes(tmp_path, real_data_root):
    check = _script()
    ours = OmegaConf.to_container(check.compose_check(real_data_root, tmp_path, 300, 16))
    result = run_cli(
        "train",
        *check.check_overrides(real_data_root, tmp_path, 300, 16),
        "--cfg",
        "job",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert yaml.safe_load(result.stdout) == ours
    assert ours["model"]["name"] == "unet" and ours["trainer"]["precision"] == "auto"
    assert ours["trainer"]["device"] == "gpu" and ours["data"]["name"] == "brats"


@pytest.mark.slow
def test_without_a_gpu_it_says_so_and_exits_0(tmp_path):
    result = run_python(SCRIPT, "--out", tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no GPU visible to TensorFlow" in result.stdout
    assert "brats-seg train" in result.stdout and "model=unet" in result.stdout
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written
