"""A scan that sits twice in the test split (one patient under two names) is scored once (issue 14,
item 2)."""

from __future__ import annotations

import numpy as np
import pytest

from brats_seg.data.dataset import prepare_data
from brats_seg.inference.evaluate import evaluate_model

from conftest import data_cfg, make_root


@pytest.fixture(scope="module")
def prepared_and_model(tmp_path_factory):
    import keras

    tmp = tmp_path_factory.mktemp("dup")
    prepared = prepare_data(data_cfg(make_root(tmp / "data"), tmp / "cache"))
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((32, 32, 4)), keras.layers.Conv2D(4, 1, activation="softmax")]
    )
    return prepared, model


def test_duplicate_pair_counts_once_in_means_and_pooled_matrix(prepared_and_model):
    prepared, model = prepared_and_model
    # Brats18_A_1 and BraTS-GLI-00009-000 hold the same images (make_root writes the copy)
    with_pair, _ = evaluate_model(
        model,
        prepared,
        ["BraTS-GLI-00009-000", "Brats18_A_1", "Brats18_B_1"],
        n_overlays=0,
        tta=False,
    )
    once, _ = evaluate_model(
        model, prepared, ["BraTS-GLI-00009-000", "Brats18_B_1"], n_overlays=0, tta=False
    )
    assert [p["case"] for p in with_pair["per_patient"]] == ["BraTS-GLI-00009-000", "Brats18_B_1"]
    assert (
        with_pair["duplicates"] == {"Brats18_A_1": "BraTS-GLI-00009-000"}
        and once["duplicates"] == {}
    )
    assert with_pair["confusion_matrix"] == once["confusion_matrix"]
    assert with_pair["test_pixels"] == once["test_pixels"]
    assert with_pair["regions"] == once["regions"]
    assert with_pair["test_cases"] == ["BraTS-GLI-00009-000", "Brats18_A_1", "Brats18_B_1"]
    assert np.asarray(once["confusion_matrix"]).sum() > 0


def test_validation_draws_a_duplicated_scan_once(prepared_and_model):
    """Training and validation, like the test scores, count one patient shipped under two names
    once (issue 25, item 6)."""
    from brats_seg.training.fit import training_cases

    prepared, _ = prepared_and_model
    split = {
        "train": ["Brats18_B_1"],
        "val": ["BraTS-GLI-00009-000", "Brats18_A_1"],
        "test": [],
    }
    train, val = training_cases(prepared, split)
    assert train == ["Brats18_B_1"] and val == ["BraTS-GLI-00009-000"]
