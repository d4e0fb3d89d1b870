"""How much compute the machine gives right now: a one-second probe the benchmarks run beside each
measurement.

On a virtual machine the host decides where the virtual CPUs run, and a benchmark's figure can move
with it. The probe shows what the machine gives at the moment, apart from any framework: it times
single-threaded float32 matrix products (numpy, OpenBLAS held to one thread), pinned to each
logical CPU:

- ``solo``: GFLOP/s of one process on CPU 0 while the other CPUs idle;
- ``pair``: GFLOP/s of one process per logical CPU, running at the same time, added up;
- ``pair / solo``: about the number of CPUs when each vCPU has a physical core of its own, about
  1 when two vCPUs share one (hyperthread siblings, or a host that time-slices them).

    python benchmarks/cpu_capacity.py            # one probe, printed as JSON
    python benchmarks/cpu_capacity.py --repeat 5 # five, one per line

No TensorFlow; about 1.5 s per probe.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SIZE = 512


def _matmul_rate(cpu: int, seconds: float) -> float:
    """GFLOP/s of float32 SIZE x SIZE matrix products on ``cpu`` for ``seconds`` (child process)."""
    os.sched_setaffinity(0, {cpu})
    import numpy as np

    a = np.random.default_rng(0).random((SIZE, SIZE), dtype=np.float32)
    a @ a  # load the kernels before timing
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ a
        count += 1
    return count * 2 * SIZE**3 / (time.perf_counter() - start) / 1e9


def _run(cpus: list[int], seconds: float) -> list[float]:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", str(cpu), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for cpu in cpus
    ]
    return [float(child.communicate()[0]) for child in children]


def probe(seconds: float = 0.5) -> dict:
    """{"solo": GFLOP/s on CPU 0 alone, "pair": summed GFLOP/s of every CPU at once, "ratio"}."""
    cpus = sorted(os.sched_getaffinity(0))
    solo = _run(cpus[:1], seconds)[0]
    pair = sum(_run(cpus, seconds))
    return {"solo": round(solo, 1), "pair": round(pair, 1), "ratio": round(pair / solo, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=0.5, help="per timed part")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(_matmul_rate(int(args.child[0]), float(args.child[1])))
        return 0
    for _ in range(args.repeat):
        print(json.dumps(probe(args.seconds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
