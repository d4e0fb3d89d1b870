"""One SGD step of every registered loss, on one device or mirrored over logical CPUs.

Run by tests/training/test_replicas.py in a fresh process per strategy (logical devices must be
configured before TensorFlow initialises):  python tests/training/replica_step.py DEVICES OUT.npz
It writes, per loss, the weights after one fit step, the loss and tumour_dice fit logged, and
model.evaluate's loss and tumour_dice on seven samples (batches of 4 and 3, so the last batch splits
unevenly across two replicas).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

# Class pixel counts for the losses that weight classes by frequency (weighted, exp_log).
CLASS_COUNTS = [900.0, 40.0, 120.0, 60.0]
LEARNING_RATE = 0.5
SHAPE = (16, 16)


def data(n: int = 7, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *SHAPE, 4)).astype("float32")
    labels = np.where(x[..., 3] > 0.8, 2, 0)
    labels = np.where(x[..., 0] > 1.2, 1, labels)
    labels = np.where((x[..., 1] > 1.0) & (labels > 0), 3, labels)
    return x, np.eye(4, dtype="float32")[labels]


def fixed_weights(model, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(scale=0.3, size=w.shape).astype("float32") for w in model.get_weights()]


def build(keras):
    inputs = keras.Input((*SHAPE, 4))
    hidden = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Conv2D(4, 1, activation="softmax")(hidden)
    return keras.Model(inputs, outputs)


def main(devices: int, out: str) -> None:
    from brats_seg.training import hardware

    hardware.configure_cpu_devices(devices)
    import keras
    import tensorflow as tf

    from brats_seg.config import compose_group
    from brats_seg.losses import LOSS_NAMES, TumourDice, build_loss

    strategy = hardware.make_strategy("mirrored" if devices > 1 else "none")
    assert strategy.num_replicas_in_sync == devices, strategy.num_replicas_in_sync
    x, y = data()
    results: dict[str, np.ndarray] = {}
    for name in LOSS_NAMES:
        with strategy.scope():
            model = build(keras)
            initial = fixed_weights(model)
            model.set_weights(initial)
            loss = build_loss(compose_group("loss", name), class_counts=np.array(CLASS_COUNTS))
            model.compile(
                optimizer=keras.optimizers.SGD(LEARNING_RATE), loss=loss, metrics=[TumourDice()]
            )
        evaluated = model.evaluate(
            tf.data.Dataset.from_tensor_slices((x, y)).batch(4), verbose=0, return_dict=True
        )
        history = model.fit(
            tf.data.Dataset.from_tensor_slices((x[:4], y[:4])).batch(4), epochs=1, verbose=0
        )
        results[f"{name}/fit_loss"] = np.float64(history.history["loss"][0])
        results[f"{name}/fit_tumour_dice"] = np.float64(history.history["tumour_dice"][0])
        results[f"{name}/eval_loss"] = np.float64(evaluated["loss"])
        results[f"{name}/eval_tumour_dice"] = np.float64(evaluated["tumour_dice"])
        for i, (start, weight) in enumerate(zip(initial, model.get_weights(), strict=True)):
            results[f"{name}/initial{i}"] = start
            results[f"{name}/weight{i}"] = weight
    np.savez(out, **results)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
