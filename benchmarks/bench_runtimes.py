"""Time `brats-seg predict` end to end on real cases, once per inference backend.

    python benchmarks/bench_runtimes.py     # the first case of --data-root
    python benchmarks/bench_runtimes.py --run RUN_DIR --input ROOT_OR_CASE
    python benchmarks/bench_runtimes.py --tiny      # synthetic cases and a tiny model, quick

Without ``--run`` a briefly trained run of the shipped recipe (``recipe=real_cpu``, one epoch of a
few steps, every case of ``--data-root`` in training) is made first: its speed is the recipe's, its
accuracy is not the point. Each backend (keras, onnxruntime, openvino, auto) then runs
``brats-seg predict`` twice on ``--input`` with the recipe's TTA, in a fresh process each time: the
first call of a converted backend includes the conversion (cached in the run folder), the second
is what every later call costs. Reported per backend and call: the command's wall seconds divided by
the number of cases (start-up, reading, TTA, post-processing and writing included), and the model's
seconds per case from the predict's own timing (inference.json). The issue's floor, <= 14 s per
patient with TTA on a 2-core AVX2 CPU, is printed beside the best cached figure, not enforced.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOOR_SECONDS_PER_CASE = 14.0
BACKENDS = ("keras", "onnxruntime", "openvino", "auto")


def cli(*args: str, cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "brats_seg", *args], cwd=cwd, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"brats-seg {args[0]} failed:\n{done.stderr[-3000:]}")
    return seconds, done


def train_brief_run(work: Path, data_root: Path | None, tiny: bool) -> Path:
    run = work / "run"
    if tiny:
        args = ["debug=tiny", "model.filters=[8,16,32,64]", "model.bridge_filters=128"]
    else:
        args = [
            "recipe=real_cpu",
            f"data.root={data_root}",
            f"data.cache_dir={work / 'cache'}",
            "data.split.test=0",
            "trainer.steps_per_epoch=2",
        ]
    args += ["trainer.epochs=1", "trainer.precision=float32", f"paths.output_root={work}"]
    seconds, _ = cli("train", *args, f"hydra.run.dir={run}", cwd=work)
    print(f"trained the run to time in {seconds:.0f} s: {run}")
    return run


def tiny_cases(work: Path) -> Path:
    out = work / "cases"
    cli("synth", f"out={out}", "cases=2", "shape=[32,32,16]", "seed=3", cwd=work)
    return out


def first_case(root: Path) -> Path:
    """The first case under ``root`` by its id: one real patient."""
    from brats_seg.data.discovery import find_cases

    return sorted(find_cases(root), key=lambda c: c.case_id)[0].folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a trained run folder (default: train one)")
    parser.add_argument("--input", type=Path, help="one case folder or a root of cases")
    parser.add_argument(
        "--data-root", type=Path, default=Path("../shared/data/brats-real"), help="for training"
    )
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--tiny", action="store_true", help="synthetic cases, tiny model")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    from brats_seg.training.hardware import cpu_description

    with tempfile.TemporaryDirectory(prefix="bench-runtimes-") as tmp:
        work = Path(tmp)
        run = args.run or train_brief_run(work, args.data_root.resolve(), args.tiny)
        source = args.input.resolve() if args.input else None
        if source is None:
            source = tiny_cases(work) if args.tiny else first_case(args.data_root.resolve())
        rows = []
        for backend in args.backends.split(","):
            for call in ("first", "cached"):
                out = work / f"pred-{backend}-{call}"
                seconds, done = cli(
                    "predict",
                    f"run={run}",
                    f"input={source}",
                    f"output={out}",
                    f"backend={backend}",
                    "tta=true",
                    "montage_slices=0",
                    cwd=work,
                )
                record = json.loads((out / "inference.json").read_text())
                cases = record["cost"]["cases"]
                rows.append(
                    {
                        "backend": backend,
                        "used": sorted(set(record["backend"])),
                        "call": call,
                        "cases": cases,
                        "wall_seconds_per_case": round(seconds / cases, 2),
                        "model_seconds_per_case": record["cost"]["phase_seconds_per_case"]["model"],
                    }
                )
                r = rows[-1]
                print(
                    f"{backend:12s} {call:6s} ({','.join(r['used'])}): {cases} case(s), "
                    f"{r['wall_seconds_per_case']:.2f} s per case end to end, "
                    f"model {r['model_seconds_per_case']:.2f} s",
                    flush=True,
                )
        cached = [r for r in rows if r["call"] == "cached"]
        best = min(cached, key=lambda r: r["wall_seconds_per_case"])
        print(
            f"{cpu_description()}, {os.cpu_count()} cores; best cached: {best['backend']} "
            f"{best['wall_seconds_per_case']:.2f} s per case (floor <= {FLOOR_SECONDS_PER_CASE} s "
            f"on a 2-core AVX2 CPU: {'met' if best['wall_seconds_per_case'] <= 14 else 'missed'})"
        )
        if args.json:
            args.json.write_text(json.dumps({"cpu": cpu_description(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
