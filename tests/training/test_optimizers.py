"""build_optimizer / optimizer_label on the real configs/optimizer/*.yaml files."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from omegaconf import OmegaConf

from brats_seg.config import compose_group
from brats_seg.errors import ConfigError
from brats_seg.results.naming import optimizer_label
from brats_seg.training.optimizers import OPTIMIZER_NAMES, build_optimizer

from conftest import REPO_ROOT

CONFIGS = REPO_ROOT / "configs" / "optimizer"


def load(name: str, overrides: list[str] | None = None):
    cfg = compose_group("optimizer", name)  # the file with the schema it extends
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides or []))


def lr_of(optimizer) -> float:
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def test_every_config_file_builds():
    assert set(OPTIMIZER_NAMES) == {p.stem for p in CONFIGS.glob("*.yaml")}
    for name in OPTIMIZER_NAMES:
        optimizer, callbacks = build_optimizer(load(name), steps_total=None)
        assert isinstance(optimizer, keras.optimizers.Optimizer) and callbacks == []


def test_types_and_parameters():
    adam, _ = build_optimizer(load("adam"), None)
    assert type(adam) is keras.optimizers.Adam and lr_of(adam) == pytest.approx(3e-4)
    assert adam.weight_decay is None

    adagrad, _ = build_optimizer(load("adagrad", ["lr=0.01"]), None)
    assert type(adagrad) is keras.optimizers.Adagrad and lr_of(adagrad) == pytest.approx(0.01)
    assert adagrad.initial_accumulator_value == pytest.approx(0.1)

    sgd, _ = build_optimizer(load("sgd", ["nesterov=true", "momentum=0.8"]), None)
    assert type(sgd) is keras.optimizers.SGD and lr_of(sgd) == pytest.approx(1e-2)
    assert sgd.momentum == pytest.approx(0.8) and sgd.nesterov is True

    adamw, _ = build_optimizer(load("adamw"), None)
    assert type(adamw) is keras.optimizers.AdamW and adamw.weight_decay == pytest.approx(1e-4)

    decayed_adam, _ = build_optimizer(load("adam", ["weight_decay=0.01"]), None)
    assert decayed_adam.weight_decay == pytest.approx(0.01)


def test_cosine_schedule_runs_from_lr_to_min_lr():
    optimizer, callbacks = build_optimizer(
        load("adam", ["lr=1e-3", "schedule.name=cosine", "schedule.min_lr=1e-5"]), 100
    )
    schedule = (
        optimizer.learning_rate if callable(optimizer.learning_rate) else optimizer._learning_rate
    )
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    assert callbacks == []
    value = lambda step: float(keras.ops.convert_to_numpy(schedule(step)))  # noqa: E731
    assert value(0) == pytest.approx(1e-3)
    # Half way: min_lr + (lr - min_lr) * (1 + cos(pi/2)) / 2 = the midpoint.
    assert value(50) == pytest.approx((1e-3 + 1e-5) / 2, rel=1e-5)
    assert value(100) == pytest.approx(1e-5, rel=1e-5)
    assert value(1000) == pytest.approx(1e-5, rel=1e-5)


def test_cosine_decays_during_training():
    optimizer, _ = build_optimizer(
        load("sgd", ["schedule.name=cosine", "schedule.min_lr=0.001", "lr=0.1"]), 4
    )
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse")
    x, y = np.ones((4, 2), "float32"), np.zeros((4, 1), "float32")
    model.fit(x, y, batch_size=1, epochs=1, verbose=0)
    assert int(optimizer.iterations) == 4
    assert lr_of(optimizer) == pytest.approx(0.001, rel=1e-4)


def test_cosine_needs_steps_total():
    with pytest.raises(
        ConfigError, match="optimizer.schedule.name=cosine: needs the total number of training"
    ):
        build_optimizer(load("adam", ["schedule.name=cosine"]), None)


def test_plateau_returns_reduce_lr_callback():
    cfg = load("adagrad", ["schedule.name=plateau", "schedule.factor=0.2", "schedule.patience=5"])
    optimizer, callbacks = build_optimizer(cfg, None)
    assert lr_of(optimizer) == pytest.approx(1e-3)
    assert len(callbacks) == 1 and isinstance(callbacks[0], keras.callbacks.ReduceLROnPlateau)
    plateau = callbacks[0]
    assert (plateau.monitor, plateau.factor, plateau.patience, plateau.min_lr) == (
        "val_loss",
        0.2,
        5,
        1e-6,
    )


# Every option a config file sets: build_optimizer takes no defaults of its own.
CONSTANT = {"name": "constant", "min_lr": 1e-6, "factor": 0.5, "patience": 3}
SGD = {"name": "sgd", "weight_decay": None, "nesterov": False}


@pytest.mark.parametrize(
    "cfg,message",
    [
        (
            {"name": "rmsprop", "lr": 0.1},
            "optimizer=rmsprop: unknown optimizer (valid: optimizer=adagrad, "
            "optimizer=adam, optimizer=adamw, optimizer=sgd)",
        ),
        (
            {
                "name": "adam",
                "lr": 0.1,
                "momentum": 0.9,
                "weight_decay": None,
                "schedule": CONSTANT,
            },
            "optimizer.momentum: not an option of optimizer=adam",
        ),
        (
            {"name": "adam", "lr": 0.1, "weight_decay": None, "schedule": {**CONSTANT, "step": 2}},
            "optimizer.schedule.step: not an option of optimizer=adam",
        ),
    ],
)
def test_bad_options_raise_one_line_config_errors(cfg, message):
    """What the schema cannot say: which optimizer names exist and which keys belong to which."""
    with pytest.raises(ConfigError) as info:
        build_optimizer(cfg, 10)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["optimizer.lr=0"], "optimizer.lr=0: must be > 0"),
        (["optimizer.lr=fast"], "optimizer.lr=fast"),
        (["optimizer=adamw", "optimizer.weight_decay=null"], "optimizer.weight_decay=null"),
        (["optimizer=sgd", "optimizer.momentum=1.0"], "optimizer.momentum=1: must be >= 0 and < 1"),
        (["optimizer.schedule.name=step"], "expected one of [constant, cosine, plateau]"),
        (
            ["optimizer.schedule.name=plateau", "optimizer.schedule.factor=1.5"],
            "optimizer.schedule.factor=1.5: must be > 0 and < 1",
        ),
    ],
)
def test_bad_option_values_are_refused_when_the_config_is_composed(overrides, message):
    """The values' domains are the schema's, checked once before any work (config.check_options);
    build_optimizer reads them as given."""
    from brats_seg.config import check_options, compose, one_line

    with pytest.raises(Exception) as info:  # noqa: PT011  (Hydra's or ours: both one line)
        check_options(compose("train", overrides))
    assert message in one_line(info.value)


def test_labels():
    assert optimizer_label(load("adam")) == "adam"
    assert optimizer_label(load("adagrad")) == "Adagrad"
    assert optimizer_label(load("sgd")) == "sgd"
    assert optimizer_label(load("adamw")) == "adamw"
    assert optimizer_label(load("adam", ["schedule.name=cosine"])) == "adam"
    with pytest.raises(ConfigError, match="optimizer=nadam: unknown optimizer"):
        build_optimizer({"name": "nadam"}, 10)
