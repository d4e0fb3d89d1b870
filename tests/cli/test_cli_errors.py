"""Bad input through the real command: one line naming the file or option, exit code 1, nothing
half-written."""

from __future__ import annotations

import pytest

from conftest import (
    break_affine,
    break_label5,
    break_missing_t2,
    break_nan,
    break_shape,
    break_truncate,
    leftovers,
    make_root,
    run_cli,
    run_python,
)


@pytest.mark.parametrize(
    "breaker",
    [break_truncate, break_label5, break_shape, break_nan, break_affine, break_missing_t2],
)
def test_bad_case_through_the_command(tmp_path, breaker):
    root = make_root(tmp_path / "data")
    named = breaker(root)
    out = tmp_path / "outputs"
    result = run_cli(
        "eda", "data=brats", f"data.root={root}", f"paths.output_root={out}", cwd=tmp_path
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip() and "%|" not in line]
    errors = [line for line in lines if line.startswith("brats-seg eda: error:")]
    assert len(errors) == 1 and str(named) in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert leftovers(out / "cache") == []
    assert not (out / "eda").exists()


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_empty_selection_is_a_clear_error(tmp_path):
    root = make_root(tmp_path / "data")
    result = run_cli(
        "train",
        "data=brats",
        f"data.root={root}",
        "data.selection.threshold=100000",
        f"paths.output_root={tmp_path / 'out'}",
        "trainer=tiny",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "no slices selected" in result.stderr and "data.selection" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_data_root_names_the_option(tmp_path):
    result = run_cli("train", "data=brats", f"paths.output_root={tmp_path / 'out'}", cwd=tmp_path)
    assert result.returncode != 0
    assert "data.root" in result.stderr and "Traceback" not in result.stderr


def test_bad_option_value_names_the_option(tmp_path):
    result = run_cli(
        "train",
        "debug=tiny",
        "trainer.precision=float8",
        f"paths.output_root={tmp_path / 'out'}",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "trainer.precision" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("trainer.epochs=abc", "Value 'abc' of type 'str' could not be converted to Integer"),
        (
            "trainer.precision=fp8",
            "Invalid value 'fp8', expected one of [auto, float32, mixed_bfloat16, mixed_float16]",
        ),
        (
            "data.preprocess.normalization=l2",
            "Invalid value 'l2', expected one of [zscore, minmax, percentile]",
        ),
        ("evaluate.empty_rule=zero", "Invalid value 'zero', expected one of [brats, nan]"),
    ],
)
def test_a_wrong_type_or_choice_is_refused_at_composition(tmp_path, override, named):
    out = tmp_path / "out"
    result = run_cli("train", override, f"paths.output_root={out}", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"brats-seg train: error: Error merging override {override} ({named})"
    ]
    assert not out.exists()  # refused before any work: no cache, no run folder


def test_a_bad_choice_is_refused_by_cfg_job_too(tmp_path):
    result = run_cli("train", "trainer.strategy=horovod", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert (
        "trainer.strategy=horovod (Invalid value 'horovod', expected one of [auto, none, mirrored"
        in result.stderr
    )


def test_predict_without_options_names_them_with_an_example(tmp_path):
    result = run_cli("predict", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "brats-seg predict: error: missing mandatory options input, run: give input=... run=..., "
        "e.g. brats-seg predict run=outputs/runs/default-s42 input=/path/to/BraTS2021_00001 "
        "output=outputs/predictions"
    ]
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_key_keeps_hydras_reason(tmp_path):
    result = run_cli("train", "trainer.epoch=3", "--cfg", "job", cwd=tmp_path)
    assert result.stderr.splitlines() == [
        "brats-seg train: error: Could not override 'trainer.epoch'. To append "
        "to your config use +trainer.epoch=3 (Key 'epoch' is not in struct)"
    ]


FAILING_APP = """
import sys
from brats_seg.config import run_hydra_app

def task(cfg):
    raise OSError(28, "No space left on device")

sys.exit(run_hydra_app(task, "train", "brats-seg train", sys.argv[1:]))
"""


def test_an_uncaught_error_is_one_line_with_the_log_holding_the_traceback(tmp_path):
    """What a full disk during a run looks like: the real Hydra app and logging, a task that hits
    ENOSPC."""
    app = tmp_path / "app.py"
    app.write_text(FAILING_APP)
    args = [app, "debug=tiny", f"paths.output_root={tmp_path / 'out'}"]
    result = run_python(*args, cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    log = tmp_path / "out" / "tiny-runs" / "default-s42" / "train.log"
    assert result.stderr.splitlines() == [
        f"brats-seg train: error: OSError: [Errno 28] No space left on device (traceback in {log})"
    ]
    assert "Traceback (most recent call last)" in log.read_text() and "app.py" in log.read_text()

    full = run_python(*args, cwd=tmp_path, timeout=120, env={"HYDRA_FULL_ERROR": "1"})
    assert full.returncode == 1
    assert (
        "Traceback (most recent call last)" in full.stderr
        and "No space left on device" in full.stderr
    )


def test_an_os_error_inside_a_command_is_one_line(tmp_path):
    result = run_cli(
        "synth", "out=/proc/brats-seg-test/made", "cases=1", "shape=[32,32,16]", cwd=tmp_path
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "brats-seg synth: error: FileNotFoundError: [Errno 2] No such file or directory: "
        "'/proc/brats-seg-test' "
        "(HYDRA_FULL_ERROR=1 shows the traceback)"
    ]


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_a_damaged_cache_array_is_reported_in_one_line(tmp_path):
    args = [
        "eda",
        "paths.output_root=work",
        "overlays=0",
        "data.synth.cases=4",
        "data.synth.shape=[32,32,16]",
        "data.preprocess.crop.size=[32,32]",
        "data.selection.rule=tumour",
    ]
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    arrays = sorted((tmp_path / "work" / "cache").rglob("*.npy"))
    assert arrays
    arrays[0].write_bytes(arrays[0].read_bytes()[:100])
    result = run_cli(*args, cwd=tmp_path)
    # A rebuilt cache is fine too; a traceback is not.
    assert "Traceback" not in result.stderr
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.strip() and "%|" not in line]
        assert len(errors) == 1 and errors[0].startswith("brats-seg eda: error:"), result.stderr


def test_table_names_itself_once_and_keeps_hydras_reason(tmp_path):
    missing = run_cli("table", str(tmp_path / "nonexistent"), cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.splitlines() == [
        f"brats-seg table: error: {tmp_path / 'nonexistent'} is not a folder"
    ]
    typo = run_cli("table", str(tmp_path), "outx=1", cwd=tmp_path)
    assert typo.returncode == 1 and len(typo.stderr.splitlines()) == 1
    assert "Key 'outx' is not in struct" in typo.stderr and typo.stderr.count("table") == 1


def test_hydra_help_says_which_launchers_need_the_cluster_extra(tmp_path):
    result = run_cli("train", "--hydra-help", cwd=tmp_path)
    assert result.returncode == 0
    assert (
        "parallel (joblib) and slurm (submitit) need the cluster extra: pip install '.[cluster]'"
        in result.stdout
    )
