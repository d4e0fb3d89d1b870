"""Bad input through the real command: one line naming the file or option, exit code 1, nothing half-written."""

from __future__ import annotations

import pytest

from test_cli import run_cli
from test_data_cache import (break_affine, break_label5, break_missing_t2, break_nan, break_shape, break_truncate,
                             leftovers, make_root)


@pytest.mark.parametrize("breaker", [break_truncate, break_label5, break_shape, break_nan, break_affine,
                                     break_missing_t2])
def test_bad_case_through_the_command(tmp_path, breaker):
    root = make_root(tmp_path / "data")
    named = breaker(root)
    out = tmp_path / "outputs"
    result = run_cli("eda", "data=brats", f"data.root={root}", f"paths.output_root={out}", cwd=tmp_path)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip() and "%|" not in line]
    errors = [line for line in lines if line.startswith("brats-seg eda: error:")]
    assert len(errors) == 1 and str(named) in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert leftovers(out / "cache") == []
    assert not (out / "eda").exists()


def test_empty_selection_is_a_clear_error(tmp_path):
    root = make_root(tmp_path / "data")
    result = run_cli("train", "data=brats", f"data.root={root}", "data.selection.threshold=100000",
                     f"paths.output_root={tmp_path / 'out'}", "trainer=tiny", cwd=tmp_path)
    assert result.returncode == 1
    assert "no slices selected" in result.stderr and "data.selection" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_data_root_names_the_option(tmp_path):
    result = run_cli("train", "data=brats", f"paths.output_root={tmp_path / 'out'}", cwd=tmp_path)
    assert result.returncode != 0
    assert "data.root" in result.stderr and "Traceback" not in result.stderr


def test_bad_option_value_names_the_option(tmp_path):
    result = run_cli("train", "debug=tiny", "trainer.precision=float8", f"paths.output_root={tmp_path / 'out'}",
                     cwd=tmp_path)
    assert result.returncode == 1
    assert "trainer.precision" in result.stderr and "Traceback" not in result.stderr
