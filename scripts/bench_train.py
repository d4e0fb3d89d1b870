"""Training and prediction throughput of the study's base U-Net, side by side in one process.

    python scripts/bench_train.py         # 240x240, batch 8 (~8 min on 2 cores without bf16)
    python scripts/bench_train.py --tiny  # 64x64, a narrow U-Net (seconds; floors not enforced)


(a) the study's way: Keras fit on float32 arrays held in memory, float32 policy, glibc's default
    malloc;
(b) the brats-seg way, as `brats-seg train` runs: freed memory kept in the process
    (brats_seg.memory), the slice cache streamed through tf.data (pipeline.make_dataset),
    trainer.precision=auto;
(c) the very model of (b), fed one batch that is already a tensor in memory (no input pipeline at
    all), to isolate what the input pipeline costs. (b) and (c) alternate round by round and report
    medians, so that the machine's noise does not pass for a pipeline cost.
(a) runs first, in a fresh process, which is the most favourable place for it: the allocator setting
of (b) cannot be undone within the process, and a process that has already trained a model only gets
slower without it.
Prediction: seconds per 240x240x155 volume with the policy of (b), through the same code as
`brats-seg predict` (brain slices only; slices with no brain voxel are background without running
the model).
Floors: (b) >= 3.5x (a); (b) at most 10% slower than (c). Exit status 1 when a floor is missed (full
mode).

The 3.5x floor assumes a CPU (or GPU) with bf16 arithmetic, where `auto` picks mixed_bfloat16.
Without it `auto` stays in float32, (b) can only match (a), and the script says so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SPEEDUP_FLOOR = 3.5
PIPELINE_CEILING = 0.10
VOLUME_DEPTH = 155


def slices_per_second(model, x, y, steps: int, batch: int) -> float:
    """Keras fit on in-memory arrays: throughput over ``steps`` steps.

    One warm-up step first builds the graph.
    """
    model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(
        x[: steps * batch], y[: steps * batch], batch_size=batch, epochs=1, verbose=0, shuffle=False
    )
    return steps * batch / (time.perf_counter() - start)


def interleaved_step_seconds(model, datasets: dict, rounds: int, steps: int) -> dict[str, float]:
    """Median seconds per step of one model fed from each dataset, alternating round by round.

    Alternating (and switching which goes first) puts the machine's drifts and bursts on both sides
    alike; the median drops the rounds that a neighbour disturbed.
    """
    for data in datasets.values():  # build the graph for each input signature
        model.fit(data, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)
    seconds: dict[str, list[float]] = {name: [] for name in datasets}
    names = list(datasets)
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            model.fit(datasets[name], steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
            seconds[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(values) for name, values in seconds.items()}


def synthetic_data_config(cache_dir: str, size: int, depth: int) -> dict:
    return {
        "name": "synthetic",
        "root": None,
        "cases": None,
        "cache_dir": cache_dir,
        "workers": 2,
        "synth": {"cases": 3, "shape": [size, size, depth], "seed": 0},
        "preprocess": {
            "normalization": "zscore",
            "percentiles": [0.5, 99.5],
            "fifth_channel": None,
            "fifth_channel_sigma": 1.0,
            "crop": {"enabled": False, "size": [size, size]},
        },
        "selection": {"rule": "tumour", "threshold": 0},
        "split": {"train": 0.34, "val": 0.33, "test": 0.33, "seed": 0},
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--steps", type=int, default=None, help="timed steps of (a) (default 3)")
    parser.add_argument(
        "--rounds", type=int, default=None, help="alternating rounds of (b) and (c) (default 4)"
    )
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from brats_seg.data.dataset import prepare_data
    from brats_seg.data.pipeline import make_dataset
    from brats_seg.inference.slices import predict_slices
    from brats_seg.losses import build_loss
    from brats_seg.memory import keep_freed_memory
    from brats_seg.models import build_model, load_model_config
    from brats_seg.training.hardware import cpu_supports_bf16, device_description, resolve_precision

    size, depth, batch = (64, 24, 4) if args.tiny else (240, VOLUME_DEPTH, 8)
    steps = args.steps or 3
    rounds = args.rounds or 4
    round_steps = 4 if args.tiny else 1
    model_cfg = load_model_config("unet")
    if args.tiny:
        model_cfg.update(filters=[8, 16, 32, 64], bridge_filters=128)
    auto = resolve_precision("auto")

    def compiled(policy: str):
        keras.backend.clear_session()
        keras.mixed_precision.set_global_policy(policy)
        model = build_model(model_cfg, prepared.input_shape)
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=build_loss({"name": "bce_dice"}))
        return model

    with tempfile.TemporaryDirectory() as tmp:
        prepared = prepare_data(synthetic_data_config(tmp, size, depth))
        cases = prepared.case_ids
        stream = make_dataset(prepared, cases, batch, shuffle=True, seed=0, repeat=True)

        xs, ys = zip(*(prepared.read_slices(c) for c in cases), strict=True)
        x_mem = np.concatenate([np.asarray(x, np.float32) for x in xs])
        y_mem = keras.utils.to_categorical(np.concatenate([np.asarray(y) for y in ys]), 4).astype(
            np.float32
        )
        reps = -(-(steps + 1) * batch // len(x_mem))
        x_mem, y_mem = np.concatenate([x_mem] * reps), np.concatenate([y_mem] * reps)
        one_batch = tf.data.Dataset.from_tensors(
            (tf.constant(x_mem[:batch]), tf.constant(y_mem[:batch]))
        ).repeat()

        study = slices_per_second(compiled("float32"), x_mem, y_mem, steps, batch)
        keep_freed_memory()
        model = compiled(auto)
        step = interleaved_step_seconds(
            model, {"stream": stream, "memory": one_batch}, rounds, round_steps
        )
        ours, no_pipeline = batch / step["stream"], batch / step["memory"]

        volume = prepared.load_volume(cases[0])[0]
        predict_slices(model, volume[:batch], batch)  # warm-up
        start = time.perf_counter()
        predict_slices(model, volume, 16)
        per_volume = (time.perf_counter() - start) * (VOLUME_DEPTH / volume.shape[0])
        brain_slices = int(np.any(volume.reshape(volume.shape[0], -1) != 0, axis=1).sum())

    speedup = ours / study
    pipeline_cost = no_pipeline / ours - 1
    speed_ok, pipeline_ok = speedup >= SPEEDUP_FLOOR, pipeline_cost <= PIPELINE_CEILING
    print(
        f"base U-Net ({model_cfg['name']}, {model.count_params():,} parameters), "
        f"{size}x{size}x4, batch {batch}; "
        f"(a) {steps} steps, (b) and (c) median of {rounds} alternating rounds of "
        f"{round_steps} step(s); "
        f"{device_description()}"
    )
    print(f"(a) study's way: fit on in-memory float32 arrays, float32   {study:7.2f} slices/s")
    print(
        f"(b) brats-seg: kept memory, cache + tf.data, {auto:<16} {ours:7.2f} slices/s   "
        f"{speedup:4.2f}x (a)   floor {SPEEDUP_FLOOR}x  {'ok' if speed_ok else 'MISSED'}"
    )
    print(
        "(c) (b)'s model and policy, one batch already in memory       "
        f"{no_pipeline:7.2f} slices/s   "
        f"pipeline cost {100 * pipeline_cost:+.1f}%   floor +{100 * PIPELINE_CEILING:.0f}%  "
        f"{'ok' if pipeline_ok else 'MISSED'}"
    )
    print(
        f"prediction: {per_volume:.1f} s per 240x240x{VOLUME_DEPTH} volume "
        f"({auto}; {brain_slices} of {volume.shape[0]} slices hold brain)"
        + (" (scaled from the tiny volume)" if args.tiny else "")
    )
    if not cpu_supports_bf16() and auto == "float32":
        print(
            "note: this CPU has no bf16 arithmetic (no avx512_bf16 or amx_bf16 flag), "
            "so precision=auto keeps float32 and (b) can only match (a); "
            "the 3.5x floor needs bf16 hardware"
        )
    if args.tiny:
        return 0
    return 0 if speed_ok and pipeline_ok else 1


if __name__ == "__main__":
    sys.exit(main())
