"""Why does the same bf16 training run at two speeds from one process to the next? Each
measurement is a fresh process training the study's base U-Net (240x240x4, batch 8, bce_dice, Adam)
on random arrays with ``train_on_batch``, timed step by step, under each condition named:

    python benchmarks/bench_bf16_modes.py                    # 4 processes per condition
    python benchmarks/bench_bf16_modes.py --processes 6 --steps 8 --conditions default,no_aslr
    python benchmarks/bench_bf16_modes.py --tiny             # 64x64, a narrow U-Net: seconds

Conditions (alternated process by process, so that a drift of the machine falls on all alike):

default   as brats-seg train runs: precision=auto, freed memory kept (brats_seg.memory).
no_aslr   the same under ``setarch -R`` (address-space randomisation off), so that every process
          gets the same memory layout. If the two speeds come from where the allocator places the
          buffers, they disappear here.
malloc    glibc's allocator as it comes (no keep_freed_memory).
fit       as bench_train.py's (b): Keras fit on the synthetic slice cache through tf.data
          (pipeline.make_dataset, whose autotuner is off), each step timed by a callback, and the
          whole fit call beside the steps.
fit_inter1, fit_intra1
          `fit` with TensorFlow's inter-op (or intra-op) thread pool set to one thread.

For every process the report gives the median seconds per step, the spread of its steps (a process
that is slow on every step differs from one slowed now and then), the hypervisor's steal share over
the timed steps (``/proc/stat``: CPU time the host gave to others while this VM wanted it), the
transparent huge pages the process held (``AnonHugePages`` of ``/proc/self/smaps_rollup``), how many
CPUs the process kept busy and its busiest threads, and benchmarks/cpu_capacity.py's probe of the
machine taken just before. ``--kernels`` counts the oneDNN kernels each process ran. The parent
never imports TensorFlow. Nothing is enforced: this is a diagnosis, not a floor.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_train import (
    ProcessClock,
    compiled_keras_model,
    cpu_model_name,
    model_config,
    read_cpuinfo,
    step_clock,
    synthetic_data_config,
)
from cpu_capacity import probe as capacity_probe

CONDITIONS = ("default", "no_aslr", "malloc", "fit", "fit_inter1", "fit_intra1")


def cpu_times() -> tuple[int, int]:
    """(all jiffies, steal jiffies) of the machine since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    return sum(values[:8]), values[7] if len(values) > 7 else 0


def huge_pages_kb() -> int:
    path = Path("/proc/self/smaps_rollup")
    if not path.exists():
        return 0
    for line in path.read_text().splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    return 0


def fit_steps(model, args, size: int, batch: int, steps: list[float]):
    """Warm ``model`` up on bench_train.py's synthetic slice cache through tf.data; return a
    function that fits ``args.steps`` more steps, appending each step's seconds to ``steps``."""
    import atexit
    import shutil
    import tempfile

    from brats_seg.data.dataset import prepare_data
    from brats_seg.data.pipeline import make_dataset

    cache = tempfile.mkdtemp(prefix="bench_bf16_")
    atexit.register(shutil.rmtree, cache, True)
    prepared = prepare_data(synthetic_data_config(cache, size, 24 if args.tiny else 155))
    stream = make_dataset(
        prepared,
        prepared.case_ids,
        batch,
        shuffle=True,
        seed=0,
        repeat=True,
    )
    model.fit(stream, steps_per_epoch=2, epochs=1, verbose=0)

    def train() -> None:
        clock = step_clock()
        model.fit(stream, steps_per_epoch=args.steps, epochs=1, verbose=0, callbacks=[clock])
        steps.extend(clock.durations)

    return train


def thread_cpu() -> dict[int, tuple[int, str]]:
    """CPU ticks (user + system) and name of every thread of this process."""
    threads = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        threads[int(task.name)] = (int(fields[11]) + int(fields[12]), name)
    return threads


def worker(args) -> dict:
    if args.condition != "malloc":
        from brats_seg.memory import keep_freed_memory

        keep_freed_memory()
    import keras
    import numpy as np

    from brats_seg.training.hardware import resolve_precision

    size, batch = (64, 4) if args.tiny else (240, 8)
    if args.condition == "fit_inter1":
        import tensorflow as tf

        tf.config.threading.set_inter_op_parallelism_threads(1)
    if args.condition == "fit_intra1":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
    policy = resolve_precision("auto")
    model = compiled_keras_model(model_config(args.tiny), (size, size, 4), policy)
    steps: list[float] = []
    if args.condition.startswith("fit"):
        train = fit_steps(model, args, size, batch, steps)
    else:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch, size, size, 4)).astype(np.float32)
        y = keras.utils.to_categorical(rng.integers(0, 4, (batch, size, size)), 4)
        y = y.astype(np.float32)

        def train() -> None:
            for _ in range(args.steps):
                start = time.perf_counter()
                model.train_on_batch(x, y)
                steps.append(time.perf_counter() - start)

        for _ in range(2):
            model.train_on_batch(x, y)
    total0, steal0 = cpu_times()
    threads0, clock = thread_cpu(), ProcessClock()
    train()
    total1, steal1 = cpu_times()
    wall, cpus_busy = clock.stop()
    threads1 = thread_cpu()
    busy = {
        tid: (ticks - threads0.get(tid, (0, ""))[0], name)
        for tid, (ticks, name) in threads1.items()
    }
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    top = sorted(busy.values(), reverse=True)[:4]
    return {
        "condition": args.condition,
        "policy": policy,
        "median_s": statistics.median(steps),
        "wall_per_step_s": wall / args.steps,
        "steps_s": [round(v, 3) for v in steps],
        "min_s": min(steps),
        "max_s": max(steps),
        "steal_share": (steal1 - steal0) / max(1, total1 - total0),
        "huge_pages_mb": huge_pages_kb() / 1024,
        "cpus_busy": cpus_busy,
        "busiest_threads": [[name, round(t / ticks_per_s / wall, 2)] for t, name in top],
    }


def run_one(condition: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", condition, "--steps", str(args.steps)]
    if args.tiny:
        cmd.append("--tiny")
    if condition == "no_aslr":
        cmd = ["setarch", os.uname().machine, "-R", *cmd]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if args.kernels:
        env["ONEDNN_VERBOSE"] = "1"
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{condition} worker failed:\n{out.stderr[-2000:]}")
    lines = out.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    result["kernels"] = kernel_counts(lines[:-1])
    return result


def kernel_counts(lines: list[str]) -> dict[str, int]:
    """oneDNN implementations executed (ONEDNN_VERBOSE=1 lines), counted by name:isa."""
    counts: dict[str, int] = {}
    for line in lines:
        fields = line.split(",")
        if line.startswith("onednn_verbose") and "exec" in fields and len(fields) > 6:
            impl = fields[fields.index("exec") + 3]
            counts[impl] = counts.get(impl, 0) + 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", choices=CONDITIONS, dest="condition_worker")
    parser.add_argument("--condition", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=4, help="fresh processes per condition")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per process")
    parser.add_argument("--conditions", default="default,no_aslr")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument(
        "--kernels", action="store_true", help="count oneDNN's kernels (ONEDNN_VERBOSE=1)"
    )
    args = parser.parse_args()
    if args.condition_worker:
        args.condition = args.condition_worker
        print(json.dumps(worker(args)))
        return 0
    conditions = [c for c in args.conditions.split(",") if c]
    unknown = sorted(set(conditions) - set(CONDITIONS))
    if unknown:
        parser.error(f"unknown condition {unknown[0]!r}; choose from {', '.join(CONDITIONS)}")
    cpuinfo = read_cpuinfo()
    flags = cpuinfo.split()
    isa = [f for f in ("amx_bf16", "avx512_bf16", "avx2") if f in flags]
    print(
        f"CPU: {cpu_model_name(cpuinfo)} ({', '.join(isa)}), {os.cpu_count()} logical CPUs",
        flush=True,
    )
    results: dict[str, list[dict]] = {c: [] for c in conditions}
    for i in range(args.processes):
        order = conditions if i % 2 == 0 else list(reversed(conditions))
        for condition in order:
            capacity = capacity_probe()
            r = run_one(condition, args)
            results[condition].append(r)
            print(
                f"{condition:8s} process {i + 1}: {r['median_s']:.3f} s/step "
                f"(whole call {r['wall_per_step_s']:.3f} s/step) "
                f"(steps {r['steps_s']}), steal {100 * r['steal_share']:.1f}%, "
                f"huge pages {r['huge_pages_mb']:.0f} MB, CPUs busy {r['cpus_busy']:.2f}, "
                f"threads {r['busiest_threads']}, {r['policy']}; CPU probe before: "
                f"{capacity['pair']:.0f} GFLOP/s on all CPUs, {capacity['ratio']:.2f}x one",
                flush=True,
            )
            if r["kernels"]:
                print(f"    kernels: {r['kernels']}", flush=True)
    for condition, rs in results.items():
        medians = sorted(round(r["median_s"], 3) for r in rs)
        print(f"{condition}: per-process medians {medians}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
