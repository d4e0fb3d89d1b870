"""Losses and the TumourDice metric against values computed by hand in plain numpy (float64)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from omegaconf import OmegaConf

from brats_seg import losses as L
from brats_seg.config import compose_group
from brats_seg.errors import ConfigError
from brats_seg.results.naming import loss_label

from conftest import REPO_ROOT

CONFIGS = REPO_ROOT / "configs" / "loss"
EPS = 1e-7
K = 4


# ---------------------------------------------------------------------------------- numpy reference


def example(seed: int = 0, shape=(2, 4, 4)) -> tuple[np.ndarray, np.ndarray]:
    """One-hot truth and softmax probabilities, float64."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, K, size=shape)
    logits = rng.normal(size=(*shape, K)) * 2.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    return np.eye(K)[labels], probs


def np_bce(y, p):
    p = np.clip(p, EPS, 1 - EPS)
    return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))


def np_dice_loss(y, p, s=1e-6):
    return 1 - (2 * np.sum(y * p) + s) / (np.sum(y) + np.sum(p) + s)


def np_class_dice(y, p, s):
    return np.array(
        [
            (2 * np.sum(y[..., c] * p[..., c]) + s) / (np.sum(y[..., c]) + np.sum(p[..., c]) + s)
            for c in range(K)
        ]
    )


def np_soft_dice(y, p, s=1e-6):
    return 1 - np.mean(np_class_dice(y, p, s))


def np_weighted_cce(y, p, w):
    pixels = y.reshape(-1, K), np.clip(p, EPS, 1 - EPS).reshape(-1, K)
    return np.mean(
        [
            -sum(w[c] * yy[c] * np.log(pp[c]) for c in range(K))
            for yy, pp in zip(*pixels, strict=True)
        ]
    )


def np_exp_log(y, p, weights, w_dice=0.8, w_cross=0.2, g_dice=0.3, g_cross=0.3, smooth=1.0):
    dice_term = np.mean((-np.log(np_class_dice(y, p, smooth))) ** g_dice)
    cross = []
    for yy, pp in zip(y.reshape(-1, K), np.clip(p, EPS, 1 - EPS).reshape(-1, K), strict=True):
        label = int(np.argmax(yy))
        cross.append(weights[label] * (-np.log(pp[label])) ** g_cross)
    return w_dice * dice_term + w_cross * np.mean(cross)


def np_focal(y, p, gamma=2.0, alpha=0.25):
    p = np.clip(p, EPS, 1 - EPS)
    return np.mean(np.sum(-alpha * y * (1 - p) ** gamma * np.log(p), axis=-1))


def np_tversky(y, p, a=0.3, b=0.7, s=1e-6):
    index = []
    for c in range(K):
        tp = np.sum(y[..., c] * p[..., c])
        fp = np.sum((1 - y[..., c]) * p[..., c])
        fn = np.sum(y[..., c] * (1 - p[..., c]))
        index.append((tp + s) / (tp + a * fp + b * fn + s))
    return 1 - np.mean(index)


def np_dice_ce(y, p, regions=True, s=1.0):
    ce = np.mean(-np.sum(y * np.log(np.clip(p, EPS, 1 - EPS)), axis=-1))
    if regions:  # WT = 1+2+3, TC = 1+3, ET = 3
        y = np.stack([y[..., 1] + y[..., 2] + y[..., 3], y[..., 1] + y[..., 3], y[..., 3]], -1)
        p = np.stack([p[..., 1] + p[..., 2] + p[..., 3], p[..., 1] + p[..., 3], p[..., 3]], -1)
    else:
        y, p = y[..., 1:], p[..., 1:]
    dice = [
        (2 * np.sum(y[..., c] * p[..., c]) + s) / (np.sum(y[..., c]) + np.sum(p[..., c]) + s)
        for c in range(y.shape[-1])
    ]
    return ce + 1 - np.mean(dice)


def value(loss, y, p) -> float:
    out = loss(y.astype("float32"), p.astype("float32"))
    assert tuple(out.shape) == ()
    return float(out)


# --------------------------------------------------------------------------------------- the losses

COUNTS = np.array([1000.0, 30.0, 120.0, 50.0])


@pytest.mark.parametrize("seed", [0, 1])
def test_study_losses_match_numpy(seed):
    y, p = example(seed)
    assert value(L.DiceLoss(), y, p) == pytest.approx(np_dice_loss(y, p), abs=1e-5)
    assert value(L.BCEDiceLoss(), y, p) == pytest.approx(
        np_bce(y, p) + np_dice_loss(y, p), abs=1e-5
    )
    for alpha in (0.2, 0.7):
        expected = alpha * np_bce(y, p) + (1 - alpha) * np_dice_loss(y, p)
        assert value(L.ELLLoss(alpha=alpha), y, p) == pytest.approx(expected, abs=1e-5)
    assert value(L.SoftDiceLoss(), y, p) == pytest.approx(np_soft_dice(y, p), abs=1e-5)


def test_dice_loss_hand_value_on_two_pixels():
    # Pixel 1: class 0, p = (0.5, 0.5, 0, 0); pixel 2: class 2, p = (0, 0, 1, 0).
    # sum(y*p) = 0.5 + 1 = 1.5, sum(y) = 2, sum(p) = 2 -> 1 - 3/4 = 0.25 (smooth negligible).
    y = np.array([[[[1, 0, 0, 0], [0, 0, 1, 0]]]], dtype=float)
    p = np.array([[[[0.5, 0.5, 0, 0], [0, 0, 1, 0]]]], dtype=float)
    assert value(L.DiceLoss(), y, p) == pytest.approx(0.25, abs=1e-6)
    # Per class: c0 1/1.5, c1 0/0.5 = 0, c2 1, c3 (0 + s)/(0 + s) = 1 -> 1 - mean = 1 - (2/3 + 2)/4
    # = 1/3.
    assert value(L.SoftDiceLoss(), y, p) == pytest.approx(1 / 3, abs=1e-5)


@pytest.mark.parametrize("seed", [0, 3])
def test_other_losses_match_numpy(seed):
    y, p = example(seed)
    weights = [float(COUNTS.sum() / (K * c)) for c in COUNTS]
    assert value(L.WeightedCrossEntropy(weights), y, p) == pytest.approx(
        np_weighted_cce(y, p, weights), abs=1e-5
    )
    label_weights = np.sqrt(COUNTS.sum() / COUNTS)  # Wong et al.: ((sum_k f_k) / f_l) ** 0.5
    exp_log = L.ExpLogLoss(L.counts_to_exp_log_weights(COUNTS))
    assert value(exp_log, y, p) == pytest.approx(np_exp_log(y, p, label_weights), abs=1e-5)
    assert value(L.FocalLoss(), y, p) == pytest.approx(np_focal(y, p), abs=1e-5)
    assert value(L.TverskyLoss(), y, p) == pytest.approx(np_tversky(y, p), abs=1e-5)
    for regions in (True, False):
        expected = np_dice_ce(y, p, regions)
        assert value(L.DiceCELoss(regions=regions), y, p) == pytest.approx(expected, abs=1e-5)
    other = L.ExpLogLoss(
        [1.0, 2.0, 0.5, 3.0], w_dice=0.5, w_cross=0.5, gamma_dice=1.0, gamma_cross=0.5
    )
    expected = np_exp_log(y, p, [1.0, 2.0, 0.5, 3.0], 0.5, 0.5, 1.0, 0.5)
    assert value(other, y, p) == pytest.approx(expected, abs=1e-5)


def test_class_weights_from_counts():
    weights = L.counts_to_weights([100, 10, 20, 0])
    assert weights == pytest.approx([130 / 400, 130 / 40, 130 / 80, 0.0])
    assert L.counts_to_exp_log_weights([100, 10, 20, 0]) == pytest.approx(
        [130**0.5 / 10, 13**0.5, 6.5**0.5, 0.0]
    )


def test_perfect_prediction_gives_zero_for_dice_type_losses():
    y, _ = example(5)
    for loss in (L.DiceLoss(), L.SoftDiceLoss(), L.TverskyLoss(), L.BCEDiceLoss(), L.ELLLoss(0.7)):
        assert value(loss, y, y) == pytest.approx(0.0, abs=1e-5), loss.name
    assert value(L.FocalLoss(), y, y) == pytest.approx(0.0, abs=1e-5)
    # exp_log keeps a small floor from clipping (x**0.3 magnifies 1e-7) but must be far below a
    # random guess.
    exp_log = L.ExpLogLoss([1.0] * K)
    assert value(exp_log, y, y) < 0.01 < value(exp_log, y, example(5)[1])


def test_bfloat16_inputs_give_float32_and_same_value():
    y, p = example(2)
    yb, pb = keras.ops.cast(y, "bfloat16"), keras.ops.cast(p, "bfloat16")
    p_rounded = keras.ops.convert_to_numpy(keras.ops.cast(pb, "float32")).astype(np.float64)
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        for loss in (
            L.DiceLoss(),
            L.BCEDiceLoss(),
            L.SoftDiceLoss(),
            L.ExpLogLoss([1.0] * K),
            L.TverskyLoss(),
        ):
            out = loss(yb, pb)
            assert out.dtype == "float32", loss.name
            direct = loss.call(yb, pb)
            assert direct.dtype == "float32", loss.name
        expected = np_dice_loss(y, p_rounded)
        assert float(L.DiceLoss()(yb, pb)) == pytest.approx(expected, abs=1e-5)
    finally:
        keras.mixed_precision.set_global_policy(previous)


# ------------------------------------------------------------------------------------ serialisation

ALL_LOSSES = [
    L.DiceLoss(smooth=1e-5),
    L.BCEDiceLoss(),
    L.ELLLoss(alpha=0.7),
    L.SoftDiceLoss(),
    L.WeightedCrossEntropy([0.3, 4.0, 2.0, 0.0]),
    L.ExpLogLoss([1.0, 5.0, 3.0, 4.0], gamma_dice=0.4),
    L.FocalLoss(gamma=1.5, alpha=0.5),
    L.TverskyLoss(alpha=0.4, beta=0.6),
    L.DiceCELoss(regions=False, smooth=0.5),
]


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=lambda loss: loss.name)
def test_config_round_trip(loss):
    config = loss.get_config()
    clone = type(loss).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss) and restored.get_config() == config
    y, p = example(4)
    assert value(restored, y, p) == pytest.approx(value(loss, y, p), abs=1e-7)


def tiny_model() -> keras.Model:
    inputs = keras.Input((4, 4, 2))
    outputs = keras.layers.Conv2D(K, 1, activation="softmax")(inputs)
    return keras.Model(inputs, outputs)


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_models_with_each_loss_save_and_reload_without_custom_objects(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4, 4, 2)).astype("float32")
    y = np.eye(K, dtype="float32")[rng.integers(0, K, size=(2, 4, 4))]
    for i, loss in enumerate(ALL_LOSSES):
        model = tiny_model()
        model.compile(optimizer="adam", loss=loss, metrics=[L.TumourDice()])
        assert np.isfinite(model.train_on_batch(x, y, return_dict=True)["loss"]), loss.name
        path = tmp_path / f"m{i}.keras"
        model.save(path)
        loaded = keras.models.load_model(path)
        assert type(loaded.loss) is type(loss), loss.name
        assert loaded.loss.get_config() == loss.get_config()
        before = model.evaluate(x, y, verbose=0, return_dict=True)
        after = loaded.evaluate(x, y, verbose=0, return_dict=True)
        assert after["loss"] == pytest.approx(before["loss"], abs=1e-6)
        assert after["tumour_dice"] == pytest.approx(before["tumour_dice"], abs=1e-6)


def test_training_step_reduces_a_study_loss():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 4, 4, 2)).astype("float32")
    y = np.eye(K, dtype="float32")[(x[..., 0] > 0).astype(int) * 2]
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=L.BCEDiceLoss())
    history = model.fit(x, y, epochs=15, verbose=0).history["loss"]
    assert np.all(np.isfinite(history)) and history[-1] < history[0]


# --------------------------------------------------------------------------------------- TumourDice


def test_tumour_dice_pools_over_batches():
    y1, p1 = example(6)
    y2, p2 = example(7)
    metric = L.TumourDice()
    metric.update_state(y1.astype("float32"), p1.astype("float32"))
    metric.update_state(y2.astype("float32"), p2.astype("float32"))
    truth = np.concatenate([y1.argmax(-1), y2.argmax(-1)]).ravel()
    pred = np.concatenate([p1.argmax(-1), p2.argmax(-1)]).ravel()
    dices = []
    for c in (1, 2, 3):
        tp = np.sum((truth == c) & (pred == c))
        fp = np.sum((truth != c) & (pred == c))
        fn = np.sum((truth == c) & (pred != c))
        dices.append(2 * tp / (2 * tp + fp + fn))
    assert float(metric.result()) == pytest.approx(np.mean(dices), abs=1e-6)
    metric.reset_state()
    metric.update_state(y1.astype("float32"), y1.astype("float32"))
    assert float(metric.result()) == pytest.approx(1.0)
    clone = L.TumourDice.from_config(metric.get_config())
    assert clone.num_classes == K and clone.name == "tumour_dice"


def test_tumour_dice_counts_absent_class_as_one():
    # Only classes 0 and 1 anywhere: classes 2 and 3 absent from both -> Dice 1; class 1:
    # 2*1/(2+1+0) = 2/3.
    y = np.eye(K, dtype="float32")[np.array([[[0, 1], [1, 0]]])]
    p = np.eye(K, dtype="float32")[np.array([[[0, 1], [0, 0]]])]
    metric = L.TumourDice()
    metric.update_state(y, p)
    assert float(metric.result()) == pytest.approx((2 / 3 + 1 + 1) / 3, abs=1e-6)


# ------------------------------------------------------------------------------ build_loss / labels


def load(name: str, **overrides):
    cfg = compose_group("loss", name)  # the file with the schema it extends
    for key, val in overrides.items():
        cfg[key] = val
    return cfg


@pytest.mark.parametrize(
    "name,cls",
    [
        ("dice", L.DiceLoss),
        ("bce_dice", L.BCEDiceLoss),
        ("ell", L.ELLLoss),
        ("soft_dice", L.SoftDiceLoss),
        ("weighted", L.WeightedCrossEntropy),
        ("exp_log", L.ExpLogLoss),
        ("focal", L.FocalLoss),
        ("tversky", L.TverskyLoss),
        ("weighted_sqrt", L.WeightedCrossEntropy),
        ("dice_ce", L.DiceCELoss),
    ],
)
def test_build_loss_from_each_config_file(name, cls):
    loss = L.build_loss(load(name), class_counts=COUNTS)
    assert type(loss) is cls
    # one config per loss, named after it, plus presets of those losses
    assert set(L.LOSS_NAMES) <= {p.stem for p in CONFIGS.glob("*.yaml")}
    assert {OmegaConf.load(p).name for p in CONFIGS.glob("*.yaml")} == set(L.LOSS_NAMES)


def test_build_loss_parameters():
    ell = L.build_loss(load("ell", alpha=0.7))
    assert (ell.alpha, ell.smooth) == (0.7, 1e-6)
    weighted = L.build_loss(load("weighted"), class_counts=np.array([100, 10, 20, 0]))
    assert weighted.class_weights == pytest.approx([130 / 400, 130 / 40, 130 / 80, 0.0])
    tempered = L.build_loss(load("weighted_sqrt"), class_counts=np.array([100, 10, 20, 0]))
    assert tempered.class_weights == pytest.approx(
        [(130 / 400) ** 0.5, (130 / 40) ** 0.5, (130 / 80) ** 0.5, 0.0]
    )
    fixed = L.build_loss({"name": "weighted", "class_weights": [1, 2, 3, 4], "weight_power": 1})
    assert fixed.class_weights == [1.0, 2.0, 3.0, 4.0]
    exp_log = L.build_loss(load("exp_log"), class_counts=COUNTS)
    assert exp_log.label_weights == pytest.approx(np.sqrt(COUNTS.sum() / COUNTS))
    assert (
        exp_log.w_dice,
        exp_log.w_cross,
        exp_log.gamma_dice,
        exp_log.gamma_cross,
        exp_log.smooth,
    ) == (0.8, 0.2, 0.3, 0.3, 1.0)
    tversky = L.build_loss(load("tversky"))
    assert (tversky.alpha, tversky.beta) == (0.3, 0.7)
    focal = L.build_loss(load("focal"))
    assert (focal.gamma, focal.alpha) == (2.0, 0.25)


EXP_LOG_WEIGHTS = {
    "w_dice": 0.8,
    "w_cross": 0.2,
    "gamma_dice": 0.3,
    "gamma_cross": 0.3,
    "smooth": 1,
}


@pytest.mark.parametrize(
    "cfg,counts,message",
    [
        (
            {"name": "nope"},
            None,
            "loss=nope: unknown loss "
            "(valid: bce_dice, dice, dice_ce, ell, exp_log, focal, soft_dice",
        ),
        (
            {"name": "weighted", "class_weights": None, "weight_power": 1.0},
            None,
            "loss=weighted: needs the training label counts",
        ),
        (
            {"name": "exp_log", "class_weights": None, **EXP_LOG_WEIGHTS},
            None,
            "loss=exp_log: needs the training label counts",
        ),
        (
            {"name": "weighted", "class_weights": None, "weight_power": 1.0},
            np.array([1, 2, 3]),
            "loss=weighted: class counts must be 4",
        ),
        ({"name": "dice", "alpha": 0.3}, None, "loss.alpha: not an option of loss=dice"),
    ],
)
def test_build_loss_errors(cfg, counts, message):
    """What the schema cannot say: the loss names, which keys belong to which loss, and the label
    counts the weighted losses need."""
    with pytest.raises(ConfigError) as info:
        L.build_loss(cfg, class_counts=counts)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["loss=weighted", "loss.class_weights=[1,2]"], "loss.class_weights=[1,2]: must be a list"),
        (["loss=ell", "loss.alpha=1.5"], "loss.alpha=1.5: must be >= 0 and <= 1"),
        (["loss=dice", "loss.smooth=0"], "loss.smooth=0: must be > 0"),
        (["loss=focal", "loss.gamma=big"], "loss.gamma=big"),
    ],
)
def test_bad_loss_values_are_refused_when_the_config_is_composed(overrides, message):
    """The values' domains are the loss schemas', checked once before any work
    (config.check_options); build_loss reads them as given."""
    from brats_seg.config import check_options, compose, one_line

    with pytest.raises(Exception) as info:  # noqa: PT011  (Hydra's or ours: both one line)
        check_options(compose("train", overrides))
    assert message in one_line(info.value)


def test_loss_labels():
    assert loss_label(load("ell")) == "ell_loss (0.2)"
    assert loss_label(load("ell", alpha=0.7)) == "ell_loss (0.7)"
    expected = {
        "dice": "dice_loss",
        "bce_dice": "bce_dice_loss",
        "soft_dice": "soft_dice_loss",
        "weighted": "weighted",
        "exp_log": "exp_log",
        "focal": "focal",
        "tversky": "tversky",
    }
    for name, label in expected.items():
        assert loss_label(load(name)) == label


# ------------------------------------ values from outside this file's formulas (issue 14, item 7)
# Two pixels: class 0 predicted (0.5, 0.5, 0, 0) and class 2 predicted (0.1, 0.1, 0.6, 0.2).
HAND_Y = np.array([[[[1, 0, 0, 0], [0, 0, 1, 0]]]], dtype=float)
HAND_P = np.array([[[[0.5, 0.5, 0, 0], [0.1, 0.1, 0.6, 0.2]]]], dtype=float)


@pytest.mark.parametrize("seed", [0, 2])
def test_bce_focal_and_weighted_ce_equal_keras_own_losses(seed):
    y, p = example(seed)
    y32, p32 = y.astype("float32"), p.astype("float32")
    per_pixel_bce = keras.ops.convert_to_numpy(keras.losses.binary_crossentropy(y32, p32))
    keras_bce = float(np.mean(per_pixel_bce))
    assert float(L.binary_crossentropy(y32, p32)) == pytest.approx(keras_bce, abs=1e-5)
    bce_dice = value(L.BCEDiceLoss(), y, p) - value(L.DiceLoss(), y, p)
    assert bce_dice == pytest.approx(keras_bce, abs=1e-5)
    keras_focal = keras.losses.CategoricalFocalCrossentropy(alpha=0.25, gamma=2.0)(y32, p32)
    focal = value(L.FocalLoss(gamma=2.0, alpha=0.25), y, p)
    assert focal == pytest.approx(float(keras_focal), abs=1e-5)
    weights = np.array([0.5, 3.0, 1.5, 2.0])
    per_pixel = keras.ops.convert_to_numpy(keras.losses.categorical_crossentropy(y32, p32))
    keras_weighted = float(np.mean(per_pixel * (y @ weights)))  # true class's weight times CE
    weighted = value(L.WeightedCrossEntropy(list(weights)), y, p)
    assert weighted == pytest.approx(keras_weighted, abs=1e-5)


def test_hand_values_on_two_pixels():
    y, p = HAND_Y, HAND_P
    ln2, ln06 = 0.6931472, 0.5108256  # -ln 0.5, -ln 0.6
    # BCE over the 8 one-hot entries: pixel 1 gives ln2 + ln2 (p=0.5 for y=1 and for y=0),
    # pixel 2 gives -ln 0.9 twice (classes 0, 1), -ln 0.6 (class 2) and -ln 0.8 (class 3); the
    # clipped zeros give ~1e-7.
    bce = (2 * ln2 + 2 * 0.1053605 + ln06 + 0.2231436) / 8
    ours = float(L.binary_crossentropy(y.astype("float32"), p.astype("float32")))
    assert ours == pytest.approx(bce, abs=1e-5)
    # Dice over the flattened tensor: sum(y*p) = 0.5 + 0.6, sum(y) = 2, sum(p) = 2
    # -> 1 - 2.2/4 = 0.45
    assert value(L.DiceLoss(), y, p) == pytest.approx(0.45, abs=1e-6)
    # ell(alpha=0.2) = 0.2 * BCE + 0.8 * Dice loss
    assert value(L.ELLLoss(alpha=0.2), y, p) == pytest.approx(0.2 * bce + 0.8 * 0.45, abs=1e-5)
    # weighted CE, weights (1, 2, 3, 4): mean of 1 * -ln 0.5 and 3 * -ln 0.6 = 1.1128120
    weighted = value(L.WeightedCrossEntropy([1.0, 2.0, 3.0, 4.0]), y, p)
    assert weighted == pytest.approx(1.1128120, abs=1e-5)
    # focal (alpha 0.25, gamma 2): pixel 1: 0.25 * 0.5**2 * ln2 = 0.0433217;
    # pixel 2: 0.25 * 0.4**2 * ln(1/0.6) = 0.0204330; mean 0.0318774
    assert value(L.FocalLoss(), y, p) == pytest.approx((0.0433217 + 0.0204330) / 2, abs=1e-6)
    # Tversky (alpha 0.3 on FP, beta 0.7 on FN): class 0 TP 0.5 FP 0.1 FN 0.5 -> 0.5/0.88;
    # class 1 TP 0 -> 0; class 2 TP 0.6 FP 0 FN 0.4 -> 0.6/0.88; class 3 TP 0 -> 0;
    # loss 1 - (1.1/0.88)/4 = 0.6875
    assert value(L.TverskyLoss(alpha=0.3, beta=0.7), y, p) == pytest.approx(0.6875, abs=1e-5)
    # exp_log (Wong et al.; smooth 1, gammas 0.3, w_dice 0.8, w_cross 0.2, label weights
    # (1, 2, 3, 4)):
    # Dice per class (2*sum(y*p) + 1) / (sum(y) + sum(p) + 1): 2/2.6, 1/1.6, 2.2/2.6, 1/1.2;
    # (-ln Dice) ** 0.3: 0.6693780, 0.7973158, 0.5845977, 0.6001384 -> mean 0.6628575;
    # cross terms w_l * (-ln p_l) ** 0.3: 1 * 0.6931472**0.3 = 0.8958755,
    # 3 * 0.5108256**0.3 = 2.4524663
    # -> mean 1.6741709; L = 0.8 * 0.6628575 + 0.2 * 1.6741709 = 0.8651202
    assert value(L.ExpLogLoss([1.0, 2.0, 3.0, 4.0]), y, p) == pytest.approx(0.8651202, abs=1e-5)
