"""The brats-seg command.

Dispatch, help without TensorFlow, errors, and configs found from any directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from brats_seg.cli import COMMANDS, main

from conftest import REPO_ROOT, run_cli, run_python


def test_help_lists_every_command_and_does_not_import_tensorflow():
    code = (
        "import sys, brats_seg.cli as c; c.main(['--help']); "
        "print('tensorflow' in sys.modules, 'hydra' in sys.modules)"
    )
    out = run_python("-c", code)
    assert out.returncode == 0, out.stderr
    for name in COMMANDS:
        assert name in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "False False"


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

    listed = set(
        tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    src = REPO_ROOT / "src"
    found = {".".join(p.parent.relative_to(src).parts) for p in src.rglob("__init__.py")}
    assert found | {"brats_seg.configs"} == listed


@pytest.mark.slow
def test_installed_command_finds_configs_from_any_directory(tmp_path):
    """A non-editable install into a scratch folder composes the real configs.

    It runs from an unrelated directory.
    """
    import shutil

    # Install from a copy: pip builds in the source tree, and a build/ folder left in the repository
    # could leak stale files into a later wheel.

    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    for name in ("src", "configs"):
        shutil.copytree(
            REPO_ROOT / name,
            source / name,
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
        )
    site = tmp_path / "site"
    installed = run_python("-m", "pip", "install", "-q", "--no-deps", "--target", site, source)
    assert installed.returncode == 0, installed.stderr
    assert (site / "brats_seg" / "configs" / "train.yaml").exists()
    static = site / "brats_seg" / "viz" / "static"  # brats-seg view's page and NiiVue
    for name in ("viewer/index.html", "viewer/viewer.js", "niivue/niivue.umd.js", "niivue/LICENSE"):
        assert (static / name).is_file(), name
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(site)}
    which = run_python("-c", "import brats_seg; print(brats_seg.__file__)", cwd=elsewhere, env=env)
    assert which.returncode == 0, which.stderr
    assert which.stdout.strip().startswith(str(site))
    result = subprocess.run(
        [str(site / "bin" / "brats-seg"), "train", "--cfg", "job"],
        cwd=elsewhere,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "model:" in result.stdout and "name: unet" in result.stdout
    assert not (elsewhere / "outputs").exists()  # --cfg job prints, it does not run


COMPLETE = r"""
export PATH="$BIN:$PATH"
eval "$(brats-seg train -sc install=bash)"
complete_line() {
    COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}
    local words=($COMP_LINE)
    COMP_CWORD=$(( ${#words[@]} - 1 )); [[ "$COMP_LINE" == *" " ]] && COMP_CWORD=${#words[@]}
    COMPREPLY=(); hydra_bash_completion
    echo "${COMPREPLY[*]}"
}
complete -p brats-seg
complete_line "brats-seg tr"
complete_line "brats-seg train model=unet3pp_3"
complete_line "brats-seg train trainer.prec"
complete_line "brats-seg predict empty"
complete_line "brats-seg models na"
"""


def test_bash_completion_per_subcommand(tmp_path):
    """The installed helper, run by a real bash: commands, then each command's groups and keys."""
    import shutil

    bin_dir = Path(sys.executable).parent
    if shutil.which("bash") is None or not (bin_dir / "brats-seg").exists():
        pytest.skip("needs bash and the brats-seg script beside this Python")
    done = subprocess.run(
        ["bash", "-c", COMPLETE],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BIN": str(bin_dir)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "complete -o default -o nospace -F hydra_bash_completion brats-seg",
        "train",
        "model=unet3pp_3cnn model=unet3pp_3cnn_dilated",
        "trainer.precision=",
        "empty_rule=",
        "names=",
    ]
