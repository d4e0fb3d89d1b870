"""Keep freed memory inside the process instead of handing it back to the OS after every training
step.

TensorFlow allocates a step's activations and gradients on the CPU with malloc. glibc serves blocks
of more than 32 MiB with mmap and returns them with munmap when they are freed, so every step faults
the same hundreds of megabytes back in, page by page. On a virtual machine each of those faults is
expensive: measured on this project's 2-core VM, a U-Net at 64x64 trained at 1.6 slices/s with
glibc's defaults and at 3.1 to 4.0 slices/s with freed memory kept (benchmarks/bench_train.py shows
the figure for the study's size).

``keep_freed_memory`` sets glibc's allocator to serve every block from its heaps and to keep up to 2
GiB of free memory at their top. Peak memory does not grow: the process keeps what its largest step
needed anyway. Nothing is changed when the user has set any ``MALLOC_*`` variable (their choice
wins) or when the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_KEEP_BYTES = 2**31 - 1  # mallopt takes an int
_TOP_PAD_BYTES = 256 << 20


applied = False  # whether this process runs with the settings (recorded in run.json)


def keep_freed_memory() -> bool:
    """Tune glibc's malloc for a training process; True when the settings are in effect."""
    global applied
    if applied:
        return True
    if not sys.platform.startswith("linux") or any(
        name.startswith("MALLOC_") for name in os.environ
    ):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, for example)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    settings = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _KEEP_BYTES), (_M_TOP_PAD, _TOP_PAD_BYTES))
    applied = all(mallopt(option, value) == 1 for option, value in settings)
    return applied
