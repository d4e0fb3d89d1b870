"""The study's 22 rows as experiment configs.

Each composes with the real Hydra configs and builds its model.
"""

from __future__ import annotations

from importlib import resources

import pytest

from brats_seg.config import compose

EXPERIMENTS = sorted(
    p.name[:-5]
    for p in resources.files("brats_seg.configs").joinpath("experiment").iterdir()
    if p.name.endswith(".yaml")
)


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_there_is_one_experiment_per_study_row():
    assert len(EXPERIMENTS) == 22
    rows = sorted(compose("train", [f"experiment={e}"]).study.row for e in EXPERIMENTS)
    assert rows == list(range(1, 23))


@pytest.fixture(scope="module")
def built_counts():
    """Parameter count of each experiment's model, built from its composed config.

    One build per distinct model.
    """

    import keras

    from brats_seg.models import build_model

    cache: dict[tuple, int] = {}
    counts = {}
    for name in EXPERIMENTS:
        cfg = compose("train", [f"experiment={name}"])
        channels = 5 if cfg.data.preprocess.fifth_channel else 4
        key = (cfg.model.name, channels)
        if key not in cache:
            keras.backend.clear_session()
            cache[key] = build_model(cfg.model, (64, 64, channels)).count_params()
        counts[name] = (cfg, cache[key])
    return counts


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_builds_its_rows_parameter_count(built_counts, name):
    cfg, params = built_counts[name]
    assert cfg.experiment_id == name
    assert params == cfg.study.expected_params
    assert cfg.study.input_channels == (5 if cfg.data.preprocess.fifth_channel else 4)
    if cfg.study.params_flag:
        # rows 10, 20, 21: the study's printed count is kept beside ours, flagged, and differs
        assert cfg.study.printed.params != params and cfg.study.row in (10, 20, 21)
    else:
        assert cfg.study.printed.params == params


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_experiment_selects_its_rows_loss_and_optimizer():
    from brats_seg.results.naming import loss_label, optimizer_label

    for name in EXPERIMENTS:
        cfg = compose("train", [f"experiment={name}"])
        assert loss_label(cfg.loss) == cfg.study.printed.loss, name
        assert optimizer_label(cfg.optimizer) == cfg.study.printed.optimizer, name


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_only_row_22_crops():
    cropped = [
        e for e in EXPERIMENTS if compose("train", [f"experiment={e}"]).data.preprocess.crop.enabled
    ]
    assert cropped == ["e22_croped_4channel_unet_nobridge"]
