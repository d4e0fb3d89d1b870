"""Every option is checked when the config is composed, before any work: a value outside its domain
is one line naming the key, the value and what is allowed, exit code 1, and no run folder, cache or
output folder is made (brats_seg.config_schema, brats_seg.config.check_options)."""

from __future__ import annotations

import time

import pytest

from conftest import run_cli, run_python

# The values of issue 24 that used to pass composition and fail late (or hang): key, value.
LATE_FAILURES = [
    ("train", ["trainer.steps_per_epoch=0"], "trainer.steps_per_epoch=0"),
    ("train", ["trainer.validation_steps=0"], "trainer.validation_steps=0"),
    ("train", ["trainer.epochs=-1"], "trainer.epochs=-1"),
    ("train", ["evaluate.batch_size=0"], "evaluate.batch_size=0"),
    ("train", ["loss=ell", "loss.alpha=2"], "loss.alpha=2"),
    ("predict", ["run=outputs/runs/x", "input=cases", "batch_size=0"], "batch_size=0"),
]


def _outputs_made(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(("command", "overrides", "named"), LATE_FAILURES)
def test_a_late_failure_of_old_is_one_line_before_any_folder(tmp_path, command, overrides, named):
    extra = ["debug=tiny"] if command == "train" else []
    started = time.perf_counter()
    result = run_cli(command, *overrides, *extra, cwd=tmp_path)
    seconds = time.perf_counter() - started
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"brats-seg {command}: error: {named}: must be")
    assert _outputs_made(tmp_path) == []  # no outputs/, no run folder, no cache
    # A whole Python start, imports and two compositions: about 2 s on a quiet 2-core machine;
    # bounded loosely here, as the suite shares the machine.
    assert seconds < 60


CHECK_WITHOUT_TENSORFLOW = """
import sys
from brats_seg.cli import main
code = main(sys.argv[1:])
print("tensorflow" in sys.modules, "keras" in sys.modules, code)
"""


def test_the_check_imports_no_tensorflow(tmp_path):
    args = ["train", "debug=tiny", "trainer.epochs=0"]
    result = run_python("-c", CHECK_WITHOUT_TENSORFLOW, *args, cwd=tmp_path, timeout=120)
    assert result.stdout.split() == ["False", "False", "1"], result.stderr
    assert "trainer.epochs=0: must be >= 1" in result.stderr


# One bad value per domain of each schema: (command, overrides, the start of the message).
DOMAINS = [
    # trainer
    ("train", ["trainer.batch_size=0"], "trainer.batch_size=0: must be >= 1"),
    ("train", ["trainer.cpu_devices=0"], "trainer.cpu_devices=0: must be >= 1, or null"),
    ("train", ["trainer.early_stopping.patience=-1"], "trainer.early_stopping.patience=-1"),
    ("train", ["trainer.verbose=3"], "trainer.verbose=3: must be auto, 0, 1 or 2"),
    # data
    ("train", ["data.workers=0"], "data.workers=0: must be >= 1"),
    ("train", ["data.preprocess.percentiles=[99,1]"], "data.preprocess.percentiles=[99,1]"),
    ("train", ["data.preprocess.percentiles=[1,101]"], "data.preprocess.percentiles=[1,101]"),
    ("train", ["data.preprocess.fifth_channel_sigma=0"], "data.preprocess.fifth_channel_sigma=0"),
    ("train", ["data.preprocess.crop.size=[40,48]"], "data.preprocess.crop.size=[40,48]"),
    ("train", ["data.preprocess.context_slices=5"], "data.preprocess.context_slices=5"),
    ("train", ["data.selection.threshold=-1"], "data.selection.threshold=-1"),
    ("train", ["data.split.val=1.5"], "data.split.val=1.5: must be >= 0 and <= 1"),
    ("train", ["data.split.train=0.9"], "data.split.train=0.9: must be train + val + test = 1"),
    ("train", ["data.split.train=null", "data.split.test=0.8"], "data.split.test=0.8"),
    ("train", ["data.split.folds=1"], "data.split.folds=1: must be >= 2, or null"),
    ("train", ["data.split.folds=4", "data.split.fold=4"], "data.split.fold=4: must be 0 to 3"),
    ("train", ["data.augment.scale=2"], "data.augment.scale=2: must be >= 0 and <= 0.9"),
    ("train", ["data.sampling.foreground=1.5"], "data.sampling.foreground=1.5"),
    ("train", ["data.patch.size=[24,24]"], "data.patch.size=[24,24]: must be multiples of 16"),
    ("train", ["data.synth.cases=0"], "data.synth.cases=0: must be >= 1"),
    # model (its options are typed and checked by brats_seg.models.options)
    ("train", ["model.dropout_rate=1.0"], "model unet: model.dropout_rate must be"),
    ("train", ["model.filters=[0,8]"], "model unet: model.filters must be"),
    # loss
    ("train", ["loss=dice", "loss.smooth=0"], "loss.smooth=0: must be > 0"),
    ("train", ["loss=focal", "loss.gamma=-1"], "loss.gamma=-1: must be >= 0"),
    ("train", ["loss=tversky", "loss.beta=-0.5"], "loss.beta=-0.5: must be >= 0"),
    ("train", ["loss=weighted", "loss.class_weights=[1,2]"], "loss.class_weights=[1,2]"),
    ("train", ["loss=exp_log", "loss.gamma_dice=0"], "loss.gamma_dice=0: must be > 0"),
    # optimizer
    ("train", ["optimizer.lr=0"], "optimizer.lr=0: must be > 0"),
    ("train", ["optimizer=sgd", "optimizer.momentum=1"], "optimizer.momentum=1: must be >= 0"),
    ("train", ["optimizer.schedule.factor=1"], "optimizer.schedule.factor=1: must be > 0"),
    ("train", ["optimizer.schedule.min_lr=1"], "optimizer.schedule.min_lr=1: must be at most"),
    ("train", ["optimizer=adamw", "optimizer.weight_decay=null"], "optimizer.weight_decay=null"),
    # inference (the evaluate node of a run)
    ("train", ["evaluate.overlays=-1"], "evaluate.overlays=-1: must be >= 0"),
    (
        "train",
        ["evaluate.postprocess.min_component_share=2"],
        "evaluate.postprocess.min_component_share=2",
    ),
    ("train", ["evaluate.postprocess.min_component=-1"], "evaluate.postprocess.min_component=-1"),
    # tools
    ("predict", ["run=r", "input=i", "montage_slices=-1"], "montage_slices=-1: must be >= 0"),
    ("predict", ["run=r", "input=i", "postprocess.et_min_volume=-1"], "postprocess.et_min_volume"),
    ("evaluate", ["run=r", "batch_size=0"], "batch_size=0: must be >= 1"),
    ("eda", ["overlays=-1"], "overlays=-1: must be >= 0"),
    ("synth", ["cases=0"], "cases=0: must be >= 1"),
    ("synth", ["workers=0"], "workers=0: must be >= 1"),
    ("synth", ["shape=[32,32]"], "shape=[32,32]: must be a list of 3 numbers"),
    ("models", ["num_classes=1"], "num_classes=1: must be >= 2"),
    # true/false options take true or false, not what OmegaConf would read as one
    ("train", ["evaluate.tta=2"], "evaluate.tta=2: must be true or false"),
    ("train", ["trainer.force=0"], "trainer.force=0: must be true or false"),
    ("predict", ["run=r", "input=i", "tta=yes"], "tta=yes: must be true or false"),
    ("evaluate", ["run=r", "calibration=1"], "calibration=1: must be true or false"),
]


@pytest.mark.parametrize(("command", "overrides", "named"), DOMAINS)
def test_each_domain_is_checked_before_any_work(
    tmp_path, monkeypatch, capsys, command, overrides, named
):
    from brats_seg.cli import main

    monkeypatch.chdir(tmp_path)
    extra = ["debug=tiny"] if command == "train" else []
    code = main([command, *overrides, *extra])
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert len(err) == 1 and err[0].startswith(f"brats-seg {command}: error: {named}"), err
    assert _outputs_made(tmp_path) == []


@pytest.mark.parametrize(
    ("command", "override", "named"),
    [
        ("table", "bootstrap=0", "bootstrap=0: must be >= 1"),
        ("compare", "bootstrap=10", "bootstrap=10: must be >= 100"),
        ("report", "bootstrap=10", "bootstrap=10: must be >= 100"),
        ("table", "printed=2", "printed=2: must be true or false"),
    ],
)
def test_the_folder_commands_check_their_options_too(
    tmp_path, monkeypatch, capsys, command, override, named
):
    from brats_seg.cli import main

    runs = tmp_path / "runs"
    runs.mkdir()
    monkeypatch.chdir(tmp_path)
    folders = [str(runs)] * (2 if command == "compare" else 1)
    code = main([command, *folders, override])
    err = capsys.readouterr().err.splitlines()
    assert code == 1 and len(err) == 1 and named in err[0], err
    assert _outputs_made(tmp_path) == ["runs"] and _outputs_made(runs) == []


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_every_recorded_composition_is_within_its_domains():
    """The study's rows (also under debug=smoke), every group choice and each tool's defaults pass
    the check."""
    from importlib import resources

    from brats_seg.commands.train import check_model_options
    from brats_seg.config import check_options, compose

    configs = resources.files("brats_seg.configs")
    cases = [("train", ["data.root=/data"])]
    for group in ("experiment", "model", "data", "debug", "trainer", "loss", "optimizer", "recipe"):
        for entry in configs.joinpath(group).iterdir():
            if entry.name.endswith(".yaml"):
                cases.append(("train", [f"{group}={entry.name[:-5]}", "data.root=/data"]))
                if group == "experiment":
                    cases.append(("train", [f"{group}={entry.name[:-5]}", "debug=smoke"]))
    cases += [(tool, []) for tool in ("eda", "evaluate", "models", "synth", "table", "export")]
    cases += [("predict", ["run=r", "input=i"]), ("compare", []), ("report", [])]
    cases += [("view", ["predictions=p", "input=i"])]
    for name, overrides in cases:
        cfg = compose(name, overrides)
        check_options(cfg, check=check_model_options if name == "train" else None)


def test_a_sweep_with_one_bad_job_is_refused_before_any_job_runs(tmp_path, monkeypatch, capsys):
    """Every job of a sweep is composed and checked first (Hydra's own expansion of the sweep), so
    no sweep folder, job folder or cache is made and the good jobs do not train."""
    from brats_seg.cli import main

    monkeypatch.chdir(tmp_path)
    code = main(["train", "-m", "debug=smoke", "experiment=glob(e0*)", "trainer.epochs=1,-1"])
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert err == ["brats-seg train: error: trainer.epochs=-1: must be >= 1"]
    assert _outputs_made(tmp_path) == []
