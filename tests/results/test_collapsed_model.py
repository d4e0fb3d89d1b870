"""A model that predicts only background is flagged, and the study's NaN-propagating Col Ave is
shown beside the NaN-skipping one (issue 14, item 4)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from brats_seg.metrics.confusion import collapse_note, per_class_metrics


def test_background_only_matrix_by_hand():
    # truth rows: 970 background, 10 core, 15 edema, 5 ET pixels; every pixel predicted background
    cm = np.zeros((4, 4), dtype=np.int64)
    cm[:, 0] = [970, 10, 15, 5]
    m = per_class_metrics(cm)
    # background: precision 970/1000, recall 1; classes 1..3: recall 0, precision 0/0
    assert m["col_ave"]["precision"] == pytest.approx(0.97)
    assert m["col_ave"]["sensitivity"] == pytest.approx(0.25)
    assert math.isnan(m["col_ave_study"]["precision"])
    assert m["col_ave_study"]["f1"] == pytest.approx(
        1940 / 1970 / 4
    )  # F1 of 1..3 is 0/(0+FN) = 0, defined
    assert m["col_ave_study"]["sensitivity"] == pytest.approx(0.25)
    assert m["never_predicted"] == [1, 2, 3]
    assert collapse_note(m["never_predicted"]) == "collapsed: classes 1, 2, 3 never predicted"
    assert collapse_note([2]) == "collapsed: class 2 never predicted" and collapse_note([]) is None


def test_a_class_absent_from_the_truth_is_not_a_collapse():
    cm = np.diag([50, 5, 5, 0])
    m = per_class_metrics(cm)
    assert m["never_predicted"] == []
    assert math.isnan(
        m["col_ave_study"]["sensitivity"]
    )  # ET recall 0/0: the study's mean is NaN too


@pytest.fixture(scope="module")
def collapsed_run(tmp_path_factory):
    """A run folder whose real evaluation is of a model that outputs background for every pixel."""
    import keras
    from omegaconf import OmegaConf

    from brats_seg.config import compose
    from brats_seg.data.dataset import prepare_data
    from brats_seg.inference.evaluate import evaluate_model, write_evaluation

    from conftest import data_cfg, make_root

    tmp = tmp_path_factory.mktemp("collapsed")
    prepared = prepare_data(data_cfg(make_root(tmp / "data"), tmp / "cache"))
    model = keras.Sequential(
        [
            keras.Input((32, 32, 4)),
            keras.layers.Conv2D(
                4,
                1,
                activation="softmax",
                kernel_initializer="zeros",
                bias_initializer=keras.initializers.Constant([5.0, 0, 0, 0]),
            ),
        ]
    )
    metrics, overlays = evaluate_model(
        model, prepared, ["Brats18_B_1", "Brats18_C_1"], n_overlays=1, tta=False
    )
    run_dir = tmp / "runs" / "e02_unet_nobridge-s0"
    run_dir.mkdir(parents=True)
    cfg = compose("train", ["experiment=e02_unet_nobridge"])
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (run_dir / "run.json").write_text(json.dumps({"status": "completed"}))
    write_evaluation(run_dir, metrics, overlays, title="collapsed")
    return run_dir


def test_metrics_json_and_md_flag_the_collapse(collapsed_run):
    metrics = json.loads((collapsed_run / "metrics.json").read_text())
    assert metrics["never_predicted"] == [1, 2, 3]
    assert metrics["collapsed"] == "collapsed: classes 1, 2, 3 never predicted"
    assert metrics["col_ave_study"]["precision"] is None  # NaN, written as null
    assert metrics["col_ave"]["precision"] > 0.5
    md = (collapsed_run / "metrics.md").read_text()
    assert "**collapsed: classes 1, 2, 3 never predicted**" in md
    study_row = next(
        line for line in md.splitlines() if line.startswith("| Col Ave (study: NaN propagates)")
    )
    cells = [cell.strip() for cell in study_row.strip("|").split("|")]
    assert cells[4] == "nan" and cells[1] != "nan"  # precision undefined, sensitivity defined
    assert any(line.startswith("| Col Ave (NaN skipped)") for line in md.splitlines())


def test_table_shows_the_flag_and_both_averages(collapsed_run, tmp_path):
    from brats_seg.results.table import write_table

    write_table([collapsed_run.parent], tmp_path / "table")
    with open(tmp_path / "table" / "results.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["flags"] == "collapsed: classes 1, 2, 3 never predicted"
    assert row["precision (NaN propagates)"] == "nan" and float(row["precision"]) > 0.5
    assert float(row["recall (NaN propagates)"]) == pytest.approx(float(row["recall"]))
    header = list(row)
    assert header.index("precision (NaN propagates)") > header.index("specificity")
