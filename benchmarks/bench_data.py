"""Benchmark the data layer and fail when a floor is missed.

    python benchmarks/bench_data.py         # realistic sizes (a few minutes)
    python benchmarks/bench_data.py --tiny  # small sizes, seconds (speed-up floor not enforced)

(a) Memory: peak RSS (ru_maxrss) of a fresh process that streams one shuffled epoch through
    ``pipeline.make_dataset`` over a slice cache, and over one four times larger. Floor:
    large/small <= 1.2. A control row loads the larger cache into memory first, to show that the
    measurement can see it. The same runs give the pipeline's throughput (slices/s), printed beside
    a U-Net train step (full mode).
(b) Cache build: cases/s building the slice cache from 240x240x155 NIfTI cases with data.workers=1
    and 2 (fresh cache folders each). Floor: 2 workers >= 1.6x one worker. The cases are the real
    BraTS cases copied (renamed) into a temporary folder at run time when ../shared/data/brats-real
    exists, otherwise generated.
Everything is written to a temporary folder that is deleted at the end. Exit status 1 when a floor
is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RSS_RATIO_CEILING = 1.2
SPEEDUP_FLOOR = 1.6
REAL_DATA = Path(
    os.environ.get(
        "BRATS_SEG_REAL_DATA",
        Path(__file__).resolve().parents[2] / "shared" / "data" / "brats-real",
    )
)

FULL = {
    "slice": 240,
    "cases": 8,
    "slices_per_case": 60,
    "batch": 32,
    "build_cases": 8,
    "build_shape": (240, 240, 155),
}
TINY = {
    "slice": 64,
    "cases": 4,
    "slices_per_case": 25,
    "batch": 16,
    "build_cases": 4,
    "build_shape": (48, 48, 24),
}


# --------------------------------------------------------------------------------------- (a) memory


def write_slice_cache(path: Path, cases: int, slices: int, size: int, seed: int) -> Path:
    """A slice cache written directly in the builder's format: BraTS-like random slices.

    No NIfTI needed.
    """
    from brats_seg.data import cache
    from brats_seg.data.settings import PreprocessSettings, SelectionSettings

    rng = np.random.default_rng(seed)
    metas = {}
    for i in range(cases):
        x = rng.normal(size=(slices, size, size, 4)).astype(np.float16)
        y = rng.integers(0, 4, size=(slices, size, size), dtype=np.uint8)
        meta = {
            "case_id": f"Bench_{i:04d}",
            "convention": "brats2021",
            "fingerprint": f"fp{i}",
            "slice_shape": [size, size, 4],
            "num_slices": slices,
            "selected": list(range(slices)),
            "class_counts": np.bincount(y.ravel(), minlength=4).tolist(),
        }
        cache.write_case_entry(path, meta, x, y)
        metas[meta["case_id"]] = meta
    cache.write_index(
        path,
        {
            "name": "bench",
            "root": str(path),
            "preprocess": PreprocessSettings.default().as_dict(),
            "selection": SelectionSettings("brain", 0).as_dict(),
            "cases": metas,
        },
    )
    return path


def stream_epoch(cache_path: str, batch: int, eager: bool) -> dict:
    """Run in a child process: one shuffled epoch through make_dataset.

    Reports peak RSS and throughput.
    """
    from brats_seg.data.dataset import PreparedData
    from brats_seg.data.pipeline import make_dataset

    prepared = PreparedData.open(cache_path)
    hold = (
        [prepared.read_slices(c)[0].astype(np.float32) for c in prepared.case_ids]
        if eager
        else None
    )
    ds = make_dataset(prepared, prepared.case_ids, batch, shuffle=True, seed=0)
    next(iter(ds))  # build the graph before timing
    start, seen = time.perf_counter(), 0
    for x, _ in ds:
        seen += int(x.shape[0])
    seconds = time.perf_counter() - start
    del hold
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"rss_mb": peak_kib / 1024, "slices": seen, "slices_per_s": seen / seconds}


def unet_step_seconds(size: int, batch: int) -> float:
    """Seconds per train step of the default U-Net on one batch (run in a child process)."""
    import keras

    from brats_seg.config import compose
    from brats_seg.models import build_model

    cfg = compose("train", [])
    model = build_model(cfg.model, (size, size, 4), 4)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(batch, size, size, 4)).astype(np.float32)
    y = keras.utils.to_categorical(np.random.default_rng(1).integers(0, 4, (batch, size, size)), 4)
    model.train_on_batch(x, y)
    start = time.perf_counter()
    model.train_on_batch(x, y)
    return time.perf_counter() - start


def run_child(*args: str) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_memory(work: Path, sizes: dict, with_unet: bool) -> tuple[list[tuple], bool]:
    small = write_slice_cache(
        work / "small", sizes["cases"], sizes["slices_per_case"], sizes["slice"], 0
    )
    large = write_slice_cache(
        work / "large", 4 * sizes["cases"], sizes["slices_per_case"], sizes["slice"], 1
    )
    batch = str(sizes["batch"])
    results = {
        name: run_child("--stream", str(path), "--batch", batch)
        for name, path in (("small", small), ("large", large))
    }
    control = run_child("--stream", str(large), "--batch", batch, "--eager")
    ratio = results["large"]["rss_mb"] / results["small"]["rss_mb"]
    mb = {
        name: sum(f.stat().st_size for f in path.rglob("x.npy")) / 2**20
        for name, path in (("small", small), ("large", large))
    }
    rows = [
        (
            "stream small set",
            f"{results['small']['slices']} slices, {mb['small']:.0f} MB x",
            f"peak RSS {results['small']['rss_mb']:.0f} MB",
            f"{results['small']['slices_per_s']:.0f} slices/s",
        ),
        (
            "stream 4x set",
            f"{results['large']['slices']} slices, {mb['large']:.0f} MB x",
            f"peak RSS {results['large']['rss_mb']:.0f} MB",
            f"{results['large']['slices_per_s']:.0f} slices/s",
        ),
        (
            "RSS ratio 4x/1x",
            f"floor <= {RSS_RATIO_CEILING}",
            f"{ratio:.3f}",
            "ok" if ratio <= RSS_RATIO_CEILING else "MISSED",
        ),
        (
            "control: 4x set held in RAM",
            "(not a floor)",
            f"peak RSS {control['rss_mb']:.0f} MB",
            f"ratio {control['rss_mb'] / results['small']['rss_mb']:.2f}",
        ),
    ]
    if with_unet:
        step = run_child("--unet-step", "--size", str(sizes["slice"]), "--batch", batch)["seconds"]
        rows.append(
            (
                "U-Net train step (default model)",
                f"batch {batch} of {sizes['slice']}px",
                f"{step:.2f} s/step = {sizes['batch'] / step:.1f} slices/s",
                "pipeline is "
                f"{results['large']['slices_per_s'] * step / sizes['batch']:.0f}x faster",
            )
        )
    return rows, ratio <= RSS_RATIO_CEILING


# ---------------------------------------------------------------------------------- (b) cache build


def make_nifti_cases(root: Path, count: int, shape: tuple[int, int, int]) -> str:
    """``count`` NIfTI cases: copies of the real cases under new ids, else generated.

    The real cases are used only if available and the shape is full-size.
    """
    from brats_seg.data import synthetic
    from brats_seg.data.discovery import MODALITIES, file_name, find_cases

    if shape == (240, 240, 155) and (REAL_DATA / "BraTS2021_00000").is_dir():
        sources = [c for c in find_cases(REAL_DATA) if c.convention == "brats2021"]
        for i in range(count):
            src = sources[i % len(sources)]
            case_id = f"BraTS2021_9{i:04d}"
            folder = root / case_id
            folder.mkdir(parents=True)
            for key in (*MODALITIES, "seg"):
                path = src.images[key] if key != "seg" else src.seg
                shutil.copyfile(path, folder / file_name(case_id, key, "brats2021"))
        return f"real BraTS cases copied ({len(sources)} distinct)"
    for i in range(count):
        synthetic.write_case(root, f"BraTS2021_8{i:04d}", shape, seed=i)
    return "generated (synthetic)"


def bench_build(work: Path, sizes: dict, enforce: bool) -> tuple[list[tuple], bool]:
    from brats_seg.data.cache import build_cache
    from brats_seg.data.discovery import find_cases
    from brats_seg.data.settings import PreprocessSettings, SelectionSettings

    root = work / "nifti"
    origin = make_nifti_cases(root, sizes["build_cases"], sizes["build_shape"])
    cases = find_cases(root)
    rates = {}
    for workers in (1, 2):
        start = time.perf_counter()
        build_cache(
            work / f"cache-w{workers}",
            "bench",
            root,
            cases,
            PreprocessSettings.default(),
            SelectionSettings("tumour", 0),
            workers=workers,
        )
        rates[workers] = len(cases) / (time.perf_counter() - start)
    speedup = rates[2] / rates[1]
    ok = speedup >= SPEEDUP_FLOOR
    verdict = ("ok" if ok else "MISSED") if enforce else ("not enforced (--tiny)")
    shape = "x".join(map(str, sizes["build_shape"]))
    rows = [
        (
            "cache build, 1 worker",
            f"{len(cases)} cases {shape} ({origin})",
            f"{rates[1]:.2f} cases/s",
            "",
        ),
        ("cache build, 2 workers", "", f"{rates[2]:.2f} cases/s", ""),
        ("build speed-up", f"floor >= {SPEEDUP_FLOOR}", f"{speedup:.2f}x", verdict),
    ]
    return rows, ok or not enforce


# --------------------------------------------------------------------------------------------- main


def print_table(rows: list[tuple]) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small sizes: runs in seconds")
    parser.add_argument("--stream", help=argparse.SUPPRESS)
    parser.add_argument("--unet-step", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--eager", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=240, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stream:
        print(json.dumps(stream_epoch(args.stream, args.batch, args.eager)))
        return 0
    if args.unet_step:
        print(json.dumps({"seconds": unet_step_seconds(args.size, args.batch)}))
        return 0

    sizes = TINY if args.tiny else FULL
    work = Path(tempfile.mkdtemp(prefix="bench_data-"))
    try:
        memory_rows, memory_ok = bench_memory(work, sizes, with_unet=not args.tiny)
        shutil.rmtree(work / "small"), shutil.rmtree(work / "large")
        build_rows, build_ok = bench_build(work, sizes, enforce=not args.tiny)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table([("measure", "data", "result", "verdict"), *memory_rows, *build_rows])
    if not (memory_ok and build_ok):
        print("bench_data: a floor was missed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
