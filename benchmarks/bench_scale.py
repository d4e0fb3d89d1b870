"""How the slice cache and the training input scale with the number of patients, and what the full
BraTS 2021 (1,251 patients) would take, with `recipe=real_cpu`'s data settings and model.

    python benchmarks/bench_scale.py                  # N = 25, 50, 100, 200 at 240x240x155
    python benchmarks/bench_scale.py --cases 25,50    # a subset
    python benchmarks/bench_scale.py --work /big/disk # keep the cases there (reused next time)
    python benchmarks/bench_scale.py --small          # N = 2, 4 of 64x64x48: seconds, no floors

It writes max(N) synthetic cases (brats-seg synth's generator: four int16 modalities and the seg,
NIfTI .gz, 240x240x155 by default), then for each N, each measurement in a fresh process:

build    `prepare_data` of the first N cases with the recipe's data settings and the default
         data.workers: seconds per case, cache bytes per case, peak RSS (VmHWM) of the building
         process and of the largest worker process (RUSAGE_CHILDREN).
epoch    one pass over every training slice through the training input pipeline
         (training.fit.build_fit_data: the cache streamed by tf.data, the recipe's sampling,
         augmentation and patches), the model replaced by a no-op (the batches are taken and
         dropped): slices/s after the first batch, and the process's peak RSS.

Once, on the smallest N's cache, in its epoch process after the epoch: the recipe's model trained
by Keras on the recipe's stream (`--model-steps` timed steps after 2 warm-up steps), slices/s.
The report is one table, then the extrapolation to 1,251 cases: the cache's disk, its build time
with the default workers, and the time of one pass over the training slices with the recipe's
model on this CPU.

Floors (not enforced with --small): the peak RSS of the build (both processes) and of the epoch
grows by less than 10% from the smallest N to the largest; the input pipeline alone feeds at least
5x the recipe model's training slices/s. Exit status 1 when a floor is missed or a worker fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FULL_BRATS = 1251  # BraTS 2021's training patients
DEFAULT_CASES = (25, 50, 100, 200)
SMALL_CASES = (2, 4)
REAL_SHAPE = (240, 240, 155)
SMALL_SHAPE = (64, 64, 48)
# --small: the recipe's crop and patch and a narrow model, sized for 64x64x48 volumes.
SMALL_OVERRIDES = (
    "data.preprocess.crop.size=[64,64]",
    "data.patch.size=[32,32]",
    "model.filters=[4,8,16,32]",
    "model.bridge_filters=64",
)
RSS_GROWTH_FLOOR = 0.10
FEED_FLOOR = 5.0
WARMUP_STEPS = 2
WORKER_TIMEOUT_S = 6 * 3600


# --- shared by the parent and the workers (no TensorFlow) --------------------------------------


def case_ids(n: int) -> list[str]:
    from brats_seg.data.synthetic import case_id

    return [case_id(i) for i in range(n)]


def compose_recipe(args, n: int, cache_dir: Path, extra: tuple[str, ...] = ()):
    """The composed `brats-seg train recipe=real_cpu` config for the first ``n`` cases."""
    from brats_seg.config import compose

    overrides = [
        "recipe=real_cpu",
        f"data.root={args.root}",
        f"data.cache_dir={cache_dir}",
        "data.cases=[" + ",".join(case_ids(n)) + "]",
        *(SMALL_OVERRIDES if args.small else ()),
        *args.override,
        *extra,
    ]
    return compose("train", overrides)


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (every thread), to the nanosecond clock
    (os.times counts 10 ms ticks: the small setting's short epochs read 0 there)."""
    return time.process_time()


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# --- workers ------------------------------------------------------------------------------------


def worker_build(args) -> dict:
    from brats_seg.data.dataset import prepare_data

    cfg = compose_recipe(args, args.n, args.cache_dir)
    start = time.perf_counter()
    prepared = prepare_data(cfg.data)
    seconds = time.perf_counter() - start
    split = prepared.split()
    # evaluation's whole volumes (cache.load_volume): float16 slices and uint8 classes
    volume_bytes = [
        m["num_slices"] * 2 * math.prod(m["slice_shape"]) + math.prod(m["full_shape"])
        for m in prepared.metas.values()
    ]
    return {
        "seconds": seconds,
        "workers": int(cfg.data.workers),
        "cache_bytes": folder_bytes(prepared.cache_dir),
        "slices": prepared.slice_count(prepared.case_ids),
        "train_slices": prepared.slice_count(split["train"]),
        "train_cases": len(split["train"]),
        "volume_bytes_per_case": sum(volume_bytes) / len(volume_bytes),
        "input_bytes": sum(folder_bytes(args.root / c) for c in prepared.case_ids),
        "rss_mb": peak_rss_mb(),
        "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def training_stream(args, n: int, extra: tuple[str, ...] = ()):
    """(cfg, prepared, fit data, strategy) as `brats-seg train` sets them up."""
    from brats_seg.data.dataset import prepare_data
    from brats_seg.jobs.train import _set_up_devices
    from brats_seg.training.fit import build_fit_data

    cfg = compose_recipe(args, n, args.cache_dir, extra)
    _, strategy, _ = _set_up_devices(cfg)
    prepared = prepare_data(cfg.data)
    data = build_fit_data(cfg, prepared, prepared.split(), strategy.num_replicas_in_sync, 1)
    return cfg, prepared, data, strategy


def worker_epoch(args) -> dict:
    """One pass over the training slices, every batch taken and dropped; then, with ``--model``,
    the recipe's model timed in the same process (its memory is not in the epoch's peak)."""
    _, _, data, _ = training_stream(args, args.n, ("trainer.steps_per_epoch=null",))
    slices = batches = 0
    start = first = time.perf_counter()
    cpu = cpu_seconds()
    for x, _ in data.train:
        if batches == 0:
            first, cpu = time.perf_counter(), cpu_seconds()
        else:
            slices += int(x.shape[0])
        batches += 1
    seconds, cpu = time.perf_counter() - first, cpu_seconds() - cpu
    result = {
        "slices_per_s": slices / seconds if seconds > 0 else 0.0,
        "slices_per_cpu_s": slices / cpu if cpu > 0 else 0.0,
        "epoch_seconds": time.perf_counter() - start,
        "slices": data.n_slices,
        "batches": batches,
        "rss_mb": peak_rss_mb(),
    }
    if args.model:
        result["model"] = time_model(args)
    return result


def time_model(args) -> dict:
    """The recipe's model trained on the recipe's stream: slices/s of ``--model-steps`` steps
    after the warm-up."""
    from brats_seg.training.fit import build_compiled_model

    cfg, prepared, data, strategy = training_stream(args, args.n)
    model, _ = build_compiled_model(cfg, prepared, data, strategy)
    model.fit(data.train, steps_per_epoch=WARMUP_STEPS, epochs=1, verbose=0)
    start, cpu = time.perf_counter(), cpu_seconds()
    model.fit(data.train, steps_per_epoch=args.model_steps, epochs=1, verbose=0)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return {
        "slices_per_s": args.model_steps * data.batch / seconds,
        "slices_per_cpu_s": args.model_steps * data.batch / cpu,
        "rss_mb": peak_rss_mb(),
        "model": str(cfg.model.name),
        "params": int(model.count_params()),
        "batch": data.batch,
        "patch": list(cfg.data.patch.size) if cfg.data.patch.size else None,
        "recipe_epoch_slices": data.steps * data.batch,
    }


WORKERS = {"build": worker_build, "epoch": worker_epoch}


def run_worker(args) -> int:
    if args.worker == "epoch":
        from brats_seg.memory import keep_freed_memory

        keep_freed_memory()  # first thing, as the CLI does for `brats-seg train`
    result = WORKERS[args.worker](args)
    print(json.dumps({"worker": args.worker, **result}), flush=True)
    return 0


# --- the parent: no TensorFlow here -------------------------------------------------------------


def measure(worker: str, args, n: int, cache_dir: Path, model: bool = False) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", worker]
    command += ["--model"] if model else []
    command += ["--n", str(n), "--root", str(args.root), "--cache-dir", str(cache_dir)]
    command += ["--model-steps", str(args.model_steps)]
    command += ["--small"] if args.small else []
    for override in args.override:
        command += ["--override", override]
    done = subprocess.run(command, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    try:
        result = json.loads(lines[-1]) if done.returncode == 0 and lines else None
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict) or result.get("worker") != worker:
        raise RuntimeError(
            f"worker {worker} (N={n}) failed (exit status {done.returncode}):\n"
            f"{done.stdout[-2000:]}{done.stderr[-4000:]}"
        )
    return result


def case_list(text: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: not a comma-separated list of counts"
        ) from None
    if not values or values[0] < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: every count must be at least 2")
    return values


def growth(values: list[float]) -> float:
    return values[-1] / values[0] - 1.0


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cases", type=case_list, default=None, help="counts of cases (default 25,50,100,200)"
    )
    parser.add_argument("--small", action="store_true", help="N=2,4 of 64x64x48; no floors")
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="folder for the synthetic cases, kept and reused (default: a temporary folder); "
        "the caches are built in a fresh folder under it and removed after each N",
    )
    parser.add_argument(
        "--model-steps", type=int, default=None, help="timed steps of the model (default 20, 2)"
    )
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        help="a further Hydra override of the recipe (repeatable), e.g. data.workers=4",
    )
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model_steps is None:
        args.model_steps = 2 if args.small else 20
    if args.model_steps < 1:
        parser.error("--model-steps must be at least 1")
    if args.worker:
        return run_worker(args)

    from brats_seg.errors import BratsSegError

    counts = args.cases or list(SMALL_CASES if args.small else DEFAULT_CASES)
    shape = SMALL_SHAPE if args.small else REAL_SHAPE
    if args.work is not None and args.work.exists() and not args.work.is_dir():
        parser.error(f"--work {args.work}: not a folder")
    temporary = None
    if args.work is None:
        temporary = tempfile.mkdtemp(prefix="bench_scale_")
        work = Path(temporary)
    else:
        work = args.work.resolve()
    try:
        return run(args, counts, shape, work)
    except (RuntimeError, BratsSegError) as err:
        print(f"bench_scale: {err}", file=sys.stderr)
        return 1
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)


def run(args, counts: list[int], shape: tuple[int, int, int], work: Path) -> int:
    from brats_seg.config import compose
    from brats_seg.data.synthetic import read_description, write_synthetic_dataset
    from brats_seg.training.hardware import cpu_model_name, read_cpuinfo

    workers = int(compose("train", ["recipe=real_cpu", *args.override]).data.workers)
    side = "x".join(map(str, shape))
    args.root = work / f"cases-{side}"
    start = time.perf_counter()
    # a kept folder may hold more cases than this run needs: the generator refuses a smaller count
    written = counts[-1]
    if (args.root / "dataset.json").is_file():
        written = max(written, int(read_description(args.root).get("cases", 0)))
    print(f"writing {written} synthetic {side} cases under {args.root}", file=sys.stderr)
    write_synthetic_dataset(args.root, written, shape, seed=0, workers=workers)
    print(f"  {time.perf_counter() - start:.0f} s", file=sys.stderr)

    rows, model = [], None
    for n in counts:
        cache_dir = Path(tempfile.mkdtemp(prefix=f"cache-{n}-", dir=work))
        try:
            build = measure("build", args, n, cache_dir)
            epoch = measure("epoch", args, n, cache_dir, model=model is None)
            model = model or epoch["model"]
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
        rows.append((n, build, epoch))
        print(
            f"N={n}: build {build['seconds']:.1f} s, epoch {epoch['epoch_seconds']:.1f} s "
            f"({epoch['slices_per_s']:.0f} slices/s)",
            file=sys.stderr,
            flush=True,
        )

    print(
        f"CPU: {cpu_model_name(read_cpuinfo())}, {os.cpu_count()} cores; cases {side}; "
        f"recipe=real_cpu data settings; data.workers={workers}"
        + (f"; overrides {' '.join(args.override)}" if args.override else "")
    )
    header = (
        f"{'N':>5} {'build s/case':>12} {'cache MB/case':>13} {'build RSS MB':>12} "
        f"{'worker RSS MB':>13} {'epoch RSS MB':>12} {'input slices/s':>14} {'per CPU s':>9} "
        f"{'slices':>7}"
    )
    print(header)
    for n, build, epoch in rows:
        print(
            f"{n:>5} {build['seconds'] / n:>12.2f} {build['cache_bytes'] / n / 1e6:>13.1f} "
            f"{build['rss_mb']:>12.0f} {build['worker_rss_mb']:>13.0f} {epoch['rss_mb']:>12.0f} "
            f"{epoch['slices_per_s']:>14.1f} {epoch['slices_per_cpu_s']:>9.1f} {epoch['slices']:>7}"
        )
    print(
        f"recipe model: {model['model']} ({model['params']:,} parameters), batch {model['batch']}"
        f", patch {model['patch']}: {model['slices_per_s']:.1f} training slices/s, "
        f"{model['slices_per_cpu_s']:.2f} per CPU second ({args.model_steps} timed steps, "
        f"N={counts[0]}); peak RSS of the training process {model['rss_mb']:.0f} MB"
    )

    n, build, epoch = rows[-1]
    train_per_case = build["train_slices"] / build["train_cases"]
    train_share = build["train_cases"] / n
    full_train_slices = train_per_case * FULL_BRATS * train_share
    cache_gb = build["cache_bytes"] / n * FULL_BRATS / 1e9
    volume_gb = build["volume_bytes_per_case"] * FULL_BRATS * (1 - train_share) / 1e9
    print(
        f"extrapolated to {FULL_BRATS} cases (from N={n}): slice cache {cache_gb:.1f} GB "
        f"(plus {volume_gb:.1f} GB of whole volumes cached when the test split is evaluated, "
        f"and the NIfTI files: {build['input_bytes'] / n * FULL_BRATS / 1e9:.1f} GB of these "
        "synthetic ones)"
    )
    print(
        f"  cache build {hours(build['seconds'] / n * FULL_BRATS)} with {workers} workers; "
        f"one pass over the ~{full_train_slices:,.0f} training slices "
        f"{hours(full_train_slices / model['slices_per_s'])} with the recipe's model on this CPU "
        f"(the input pipeline alone: {hours(full_train_slices / epoch['slices_per_s'])}); "
        f"the recipe's fixed epoch ({model['recipe_epoch_slices']} slices) "
        f"{model['recipe_epoch_slices'] / model['slices_per_s']:.0f} s whatever N"
    )

    enforce = " (not enforced with --small)" if args.small else ""
    missed = []
    if len(rows) > 1:
        for label, key, source in (
            ("build RSS", "rss_mb", 1),
            ("build worker RSS", "worker_rss_mb", 1),
            ("epoch RSS", "rss_mb", 2),
        ):
            values = [row[source][key] for row in rows]
            ok = growth(values) < RSS_GROWTH_FLOOR
            missed += [] if ok else [label]
            first, last = rows[0][0], rows[-1][0]
            print(
                f"{label} N={first} -> N={last}: {values[0]:.0f} -> {values[-1]:.0f} MB, "
                f"{growth(values):+.1%}   floor < {RSS_GROWTH_FLOOR:.0%}{enforce}  "
                f"{'ok' if ok else 'MISSED'}"
            )
    feed = min(row[2]["slices_per_s"] for row in rows) / model["slices_per_s"]
    ok = feed >= FEED_FLOOR
    missed += [] if ok else ["feed"]
    # On a machine shared with other work the wall-clock rates move with the load; the rates per
    # CPU second of each process do not.
    per_cpu = min(row[2]["slices_per_cpu_s"] for row in rows) / model["slices_per_cpu_s"]
    print(
        f"input pipeline / recipe model {feed:.1f}x (the slowest N)   floor {FEED_FLOOR}x"
        f"{enforce}  {'ok' if ok else 'MISSED'}; per CPU second {per_cpu:.1f}x"
    )
    if args.small:
        return 0
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
