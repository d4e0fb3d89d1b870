"""trainer.precision=auto and the CPU feature check behind it."""

from __future__ import annotations

from pathlib import Path

import pytest

from brats_seg.errors import ConfigError
from brats_seg.training.hardware import auto_precision, cpu_supports_bf16, resolve_precision

ZEN3_FLAGS = "flags\t\t: fpu sse sse2 avx f16c fma avx2 bmi2 vaes vpclmulqdq"
ZEN4_FLAGS = ZEN3_FLAGS + " avx512f avx512bw avx512vl avx512_bf16"
SAPPHIRE_RAPIDS_FLAGS = ZEN3_FLAGS + " avx512f amx_bf16 amx_tile amx_int8"


def test_bf16_is_read_from_the_cpu_flags():
    assert not cpu_supports_bf16(ZEN3_FLAGS)
    assert cpu_supports_bf16(ZEN4_FLAGS)
    assert cpu_supports_bf16(SAPPHIRE_RAPIDS_FLAGS)
    assert not cpu_supports_bf16("flags: avx512f avx512bw")  # AVX-512 alone has no bf16 arithmetic


@pytest.mark.parametrize(("gpus", "cpu_bf16", "expected"), [
    ([], False, "float32"),
    ([], True, "mixed_bfloat16"),
    ([(8, 0)], False, "mixed_bfloat16"),   # A100
    ([(9, 0), (8, 6)], False, "mixed_bfloat16"),
    ([(7, 0)], True, "mixed_float16"),     # V100: no bf16 tensor cores, whatever the CPU
    ([(8, 0), (7, 5)], False, "mixed_float16"),  # mixed cards: the oldest decides
])
def test_auto_precision(gpus, cpu_bf16, expected):
    assert auto_precision(gpus, cpu_bf16) == expected


def test_auto_on_this_machine_follows_its_gpus_else_its_cpu():
    from brats_seg.training.hardware import _gpu_compute_capabilities

    gpus = _gpu_compute_capabilities()
    if gpus:  # a GPU host: the oldest card decides (bf16 tensor cores from compute capability 8.0)
        expected = "mixed_bfloat16" if min(gpus) >= (8, 0) else "mixed_float16"
    else:
        flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
        bf16 = {"avx512_bf16", "amx_bf16"} & set(flags.split())
        expected = "mixed_bfloat16" if bf16 else "float32"
    assert resolve_precision("auto") == expected


def test_explicit_policies_pass_through_and_others_are_refused():
    for name in ("float32", "mixed_bfloat16", "mixed_float16"):
        assert resolve_precision(name) == name
    with pytest.raises(ConfigError, match="trainer.precision='bf16'"):
        resolve_precision("bf16")


def _keeps_freed_memory(env: dict[str, str]) -> str:
    import os
    import subprocess
    import sys

    code = "from brats_seg.memory import keep_freed_memory; print(keep_freed_memory())"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="glibc on Linux only")
def test_freed_memory_is_kept_unless_the_user_tuned_malloc():
    assert _keeps_freed_memory({}) == "True"
    assert _keeps_freed_memory({"MALLOC_ARENA_MAX": "2"}) == "False"
