"""A run is used only as what it is: completed, with the config it was trained with and an intact
checkpoint (runfolder.open_run, shared by predict, evaluate, export, ensembles and the report).

The session's tiny run (conftest.tiny_trained_run) is trained once; each test changes a copy of it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from filelock import FileLock

from conftest import TINY_RUN, record_config_edit, run_cli


@pytest.fixture(scope="module")
def new_cases(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cases") / "root"
    done = run_cli("synth", f"out={root}", "cases=1", "shape=[32,32,16]")
    assert done.returncode == 0, done.stderr[-2000:]
    return root


def copy_run(run: Path, where: Path, **status) -> Path:
    copy = where / "run"
    shutil.copytree(run, copy)
    if status:
        info = json.loads((copy / "run.json").read_text())
        (copy / "run.json").write_text(json.dumps({**info, **status}))
    return copy


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    return lines[-1]


def test_a_completed_run_opens_with_its_best_checkpoint(tiny_trained_run):
    from brats_seg.runfolder import open_run

    run = open_run(tiny_trained_run)
    assert run.status == "completed" and run.checkpoint.name == "best.keras"
    assert run.record()["allow_incomplete"] is False and run.notes == []


def test_an_older_runs_config_is_completed_from_the_yaml(tiny_trained_run, tmp_path):
    """An older run's config.yaml lacks keys added since (data.labels, data.plane, ...): open_run
    completes its data node from configs/data/brats.yaml, in one place, so no reader restates a
    default; what the run recorded is kept."""
    from brats_seg.config import compose
    from brats_seg.runfolder import open_run

    run = copy_run(tiny_trained_run, tmp_path)

    def as_an_older_version_wrote_it(cfg):
        for key in ("labels", "plane", "sampling", "patch"):
            del cfg.data[key]
        del cfg.data.preprocess.context_slices

    record_config_edit(run, as_an_older_version_wrote_it)
    data = open_run(run).cfg.data
    defaults = compose("train", ["data=brats"]).data
    assert dict(data.labels) == {k: str(v) for k, v in defaults.labels.items()}
    assert data.plane == "axial" and data.preprocess.context_slices == 0
    assert data.patch.size is None and data.sampling.foreground is None
    recorded = compose("train", ["debug=tiny"]).data.selection.threshold
    assert data.selection.threshold == recorded != defaults.selection.threshold


@pytest.mark.parametrize(
    ("status", "said"),
    [
        ({"status": "failed", "error": "TrainingFailed: NaN loss"}, "failed (TrainingFailed: NaN"),
        ({"status": "running", "ended": None}, "interrupted"),
        ({"status": "interrupted", "error": "SIGTERM"}, "interrupted"),
    ],
)
def test_a_run_that_is_not_completed_is_refused_naming_its_status(
    tiny_trained_run, tmp_path, status, said
):
    from brats_seg.errors import RunError
    from brats_seg.runfolder import open_run

    run = copy_run(tiny_trained_run, tmp_path, **status)
    with pytest.raises(RunError, match="allow_incomplete=true") as caught:
        open_run(run)
    assert str(run) in str(caught.value) and said in str(caught.value)
    opened = open_run(run, allow_incomplete=True)
    assert opened.record()["allow_incomplete"] is True
    assert said in opened.notes[0]


def test_a_run_being_trained_is_refused_as_running(tiny_trained_run, tmp_path):
    from brats_seg.errors import RunError
    from brats_seg.runfolder import open_run

    run = copy_run(tiny_trained_run, tmp_path, status="running", ended=None)
    with FileLock(str(run / ".run.lock")), pytest.raises(RunError, match="is running"):
        open_run(run)


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_predict_refuses_a_failed_run_and_records_when_it_is_allowed(
    tiny_trained_run, new_cases, tmp_path
):
    run = copy_run(tiny_trained_run, tmp_path, status="failed", error="TrainingFailed: NaN loss")
    out = tmp_path / "pred"
    refused = run_cli("predict", f"run={run}", f"input={new_cases}", f"output={out}")
    line = one_error_line(refused)
    assert str(run) in line and "failed" in line
    assert not out.exists()
    allowed = run_cli(
        "predict", f"run={run}", f"input={new_cases}", f"output={out}", "allow_incomplete=true"
    )
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    assert "allow_incomplete=true" in allowed.stdout
    check = json.loads((out / "inference.json").read_text())["run_checks"][0]
    assert check["status"] == "failed" and check["allow_incomplete"] is True


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_an_ensemble_with_a_failed_member_is_refused(tiny_trained_run, tmp_path):
    good = tiny_trained_run
    bad = copy_run(tiny_trained_run, tmp_path, status="failed", error="TrainingFailed: NaN loss")
    result = run_cli("evaluate", f"run=[{good},{bad}]", f"out={tmp_path / 'ens'}")
    line = one_error_line(result)
    assert str(bad) in line and "failed" in line
    assert not (tmp_path / "ens").exists()


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_evaluate_refuses_an_edited_config_and_keeps_the_metrics(tiny_trained_run, tmp_path):
    run = copy_run(tiny_trained_run, tmp_path)
    config = run / "config.yaml"
    text = config.read_text()
    assert text.count("normalization: zscore") == 1
    config.write_text(text.replace("normalization: zscore", "normalization: minmax"))
    metrics = (run / "metrics.json").read_bytes()
    result = run_cli("evaluate", f"run={run}")
    line = one_error_line(result)
    assert str(config) in line and "edited" in line
    assert (run / "metrics.json").read_bytes() == metrics


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_a_truncated_checkpoint_is_reported_as_damaged(tiny_trained_run, tmp_path):
    run = copy_run(tiny_trained_run, tmp_path)
    best = run / "checkpoints" / "best.keras"
    best.write_bytes(best.read_bytes()[: best.stat().st_size // 2])
    result = run_cli("evaluate", f"run={run}")
    line = one_error_line(result)
    assert str(best) in line and "damaged checkpoint" in line
    assert "not found" not in line.lower()


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_last_checkpoint_is_used_only_when_told_and_export_says_so(tiny_trained_run, tmp_path):
    run = copy_run(tiny_trained_run, tmp_path)
    (run / "checkpoints" / "best.keras").unlink()
    refused = run_cli("export", f"run={run}", f"out={tmp_path / 'e1'}")
    line = one_error_line(refused)
    assert "no best.keras" in line and "use_last_checkpoint=true" in line
    done = run_cli("export", f"run={run}", f"out={tmp_path / 'e2'}", "use_last_checkpoint=true")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "used last.keras" in done.stdout
    info = json.loads((tmp_path / "e2" / "export.json").read_text())
    assert info["checkpoint"].endswith("last.keras")
    assert "used last.keras" in info["run_check"]["notes"][0]


@pytest.mark.parametrize(
    ("content", "damage"),
    [(b'{"status": "compl', "not JSON"), (b"[1, 2]", "a JSON list")],
)
def test_a_damaged_run_json_is_named_with_its_damage(tiny_trained_run, tmp_path, content, damage):
    from brats_seg.errors import RunError
    from brats_seg.runfolder import open_run

    run = copy_run(tiny_trained_run, tmp_path)
    (run / "run.json").write_bytes(content)
    with pytest.raises(RunError, match=damage) as caught:
        open_run(run)
    assert str(run / "run.json") in str(caught.value)


def test_the_table_shows_an_edited_run_without_its_metrics(tiny_trained_run, tmp_path):
    import csv

    from brats_seg.results.table import write_table

    run = copy_run(tiny_trained_run, tmp_path / "runs")
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("normalization: zscore", "normalization: minmax"))
    write_table([tmp_path / "runs"], tmp_path / "table")
    with open(tmp_path / "table" / "results.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["status"] == "config edited" and row["f1"] == ""


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_a_forced_retrain_removes_what_the_old_model_made_and_keeps_the_users_files(
    tiny_trained_run, tmp_path
):
    """trainer.force=true trains the run again from scratch: the old model's checkpoints, metrics,
    export and view go with it (they would describe a model that no longer exists); a file the
    user put in the folder stays."""
    run = copy_run(tiny_trained_run, tmp_path)
    old = json.loads((run / "run.json").read_text())
    for made_by_brats_seg in ("export/savedmodel/saved_model.pb", "view/index.html"):
        (run / made_by_brats_seg).parent.mkdir(parents=True, exist_ok=True)
        (run / made_by_brats_seg).write_text("of the old model")
    (run / "my-notes.txt").write_text("mine")
    done = run_cli(
        "train",
        *TINY_RUN,
        "trainer.force=true",
        f"paths.output_root={tmp_path / 'outputs'}",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    new = json.loads((run / "run.json").read_text())
    assert new["status"] == "completed" and new["started"] != old["started"]
    assert not (run / "export").exists() and not (run / "view").exists()
    assert (run / "my-notes.txt").read_text() == "mine"
    assert (run / "checkpoints" / "best.keras").is_file() and (run / "metrics.json").is_file()


def test_a_run_whose_hash_includes_its_cache_folder_still_verifies(tiny_trained_run, tmp_path):
    """Runs trained before data.cache_dir was known not to change results recorded a hash that
    includes it: their config.yaml still verifies, and an edit is still caught."""
    from omegaconf import OmegaConf

    from brats_seg.runfolder import RESULT_NEUTRAL_KEYS, RunFolder, config_hash, open_run

    run = copy_run(tiny_trained_run, tmp_path)
    folder = RunFolder(run)
    cfg = OmegaConf.to_container(OmegaConf.load(folder.config_path), resolve=True)
    older = tuple(k for k in RESULT_NEUTRAL_KEYS if k != "data.cache_dir")
    assert config_hash(cfg, older) != config_hash(cfg)
    folder.update(config_hash=config_hash(cfg, older))
    assert open_run(run).status == "completed"
    record_config_edit(run, lambda c: c.trainer.update(epochs=7))
    folder.update(config_hash=config_hash(cfg, older))  # the old hash, of the unedited config
    assert folder.config_edited()
