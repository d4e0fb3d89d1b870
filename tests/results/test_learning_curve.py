"""The learning-curve mode: a sweep of draws over the number of training patients, its summary
(results/learning_curve.py) and its section of the HTML report."""

from __future__ import annotations

import json
import shutil

import pytest
from scipy import stats

from brats_seg.results.learning_curve import summarise_curve, to_markdown
from brats_seg.runfolder import COMPLETED

from conftest import SMALL_UNET, record_config_edit, run_cli


def _row(n, draw, wt, status=COMPLETED, run="r"):
    return {
        "run": f"{run}{n}{draw}",
        "train_patients": n,
        "draw": draw,
        "status": status,
        "WT_dice": wt,
        "TC_dice": wt / 2,
        "ET_dice": None,
        "train_cases": ["a"],
        "test_cases": ["b"],
    }


def test_points_average_draws_and_give_a_t_interval_over_them():
    rows = [
        _row(1, 0, 0.2),
        _row(1, 1, 0.4),
        _row(1, 2, 0.6),
        _row(2, 0, 0.7),
        _row(2, 0, 0.9, run="seed2"),  # two runs of one draw count once, as their mean
        _row(2, 1, 0.5, status="failed"),  # never enters
    ]
    points = summarise_curve(rows)
    assert [p["train_patients"] for p in points] == [1, 2]
    one, two = points
    assert one["draws"] == 3 and one["WT_dice"]["mean"] == pytest.approx(0.4)
    half = stats.t.ppf(0.975, 2) * 0.2 / 3**0.5
    assert one["WT_dice"]["low"] == 0.0  # 0.4 - half is below 0: cut to the Dice's range
    assert one["WT_dice"]["high"] == pytest.approx(min(0.4 + half, 1.0))
    assert one["TC_dice"]["low"] == pytest.approx(max(0.2 - half / 2, 0.0))
    assert one["TC_dice"]["mean"] == pytest.approx(0.2)
    assert two["draws"] == 1 and two["WT_dice"]["mean"] == pytest.approx(0.8)
    assert two["WT_dice"]["low"] is None  # one draw: no interval
    assert one["ET_dice"]["mean"] is None
    table = to_markdown({"points": points, "rows": rows})
    assert "| 1 | 3 | 0.400 (" in table and "| 2 | 1 | 0.800 |" in table


@pytest.mark.slow
def test_a_learning_curve_sweep_is_summarised_and_reported(tmp_path):
    out = tmp_path / "outputs"
    out.mkdir()
    sweep = out / "curve"
    result = run_cli(
        "train",
        "-m",
        "debug=tiny",
        *SMALL_UNET,
        "trainer.epochs=1",
        "trainer.precision=float32",
        "data.split.val=0",
        "data.split.train_patients=1,2",
        "data.split.draw=0,1",
        f"paths.output_root={out}",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=n${data.split.train_patients}-d${data.split.draw}",
        cwd=tmp_path,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for n in (1, 2):
        trained = set()
        for draw in (0, 1):
            split = json.loads((sweep / f"n{n}-d{draw}" / "split.json").read_text())
            assert split["train"] and split["test"] and not split["val"]
            assert not set(split["train"]) & set(split["test"])
            trained.add(tuple(split["train"]))
        assert len(trained) == 2  # two different draws
    result = run_cli("learning-curve", str(sweep), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    curve = json.loads((sweep / "learning_curve.json").read_text())
    assert [p["train_patients"] for p in curve["points"]] == [1, 2]
    assert all(p["draws"] == 2 and p["WT_dice"]["low"] is not None for p in curve["points"])
    assert (sweep / "learning_curve.png").read_bytes().startswith(b"\x89PNG")
    assert "| training patients |" in result.stdout
    result = run_cli(
        "report", str(sweep), "overlays=false", f"out={tmp_path / 'rep'}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "Quality against the number of training patients" in page

    # a run of another plane in the same folder is refused, not averaged into its draw
    shutil.copytree(sweep / "n1-d0", sweep / "n1-d0-sagittal")
    record_config_edit(sweep / "n1-d0-sagittal", lambda cfg: cfg.data.update(plane="sagittal"))
    result = run_cli("learning-curve", str(sweep), f"out={tmp_path / 'mixed'}", cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    (line,) = result.stderr.strip().splitlines()
    assert "differ in data.plane ('axial' against 'sagittal')" in line, line
    assert not (tmp_path / "mixed").exists()


def test_configs_differ_only_in_keys_that_change_results_outside_the_varying_ones():
    from brats_seg.runfolder import config_difference

    base = {"seed": 1, "data": {"plane": "axial", "split": {"draw": 0}}, "paths": {"root": "a"}}
    other = {"seed": 2, "data": {"plane": "axial", "split": {"draw": 3}}, "paths": {"root": "b"}}
    varying = ("data.split.draw", "seed")
    assert config_difference(base, other, varying) is None  # paths change no result
    other["data"]["plane"] = "coronal"
    assert config_difference(base, other, varying) == ("data.plane", "axial", "coronal")
    del other["data"]["plane"]  # a run of an older version without the key: not compared
    assert config_difference(base, other, varying) is None
