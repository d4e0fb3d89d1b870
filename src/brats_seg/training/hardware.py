"""Precision policy and tf.distribute strategy, chosen from the config and the hardware at hand."""

from __future__ import annotations

import os
from pathlib import Path

from brats_seg.config_schema import Precision, Strategy, choices
from brats_seg.errors import ConfigError

# The choices are declared once, in the config schema.
PRECISIONS = choices(Precision)
STRATEGIES = choices(Strategy)


def read_cpuinfo() -> str:
    """/proc/cpuinfo's text ("" where there is none)."""
    path = Path("/proc/cpuinfo")
    return path.read_text() if path.exists() else ""


def cpu_model_name(cpuinfo: str | None = None) -> str:
    """The CPU's model name (e.g. "AMD EPYC 7763 64-Core Processor"): from /proc/cpuinfo, else
    what the platform reports."""
    import platform

    for line in (read_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_supports_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU has native bf16 arithmetic (AVX512-BF16 or AMX-BF16)."""
    if cpuinfo is None:
        cpuinfo = read_cpuinfo()
    flags = set(cpuinfo.split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def _gpu_compute_capabilities() -> list[tuple[int, int]]:
    import tensorflow as tf

    caps = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        caps.append(tuple(details.get("compute_capability", (0, 0))))
    return caps


def resolve_precision(name: str) -> str:
    """Map ``trainer.precision`` to a Keras dtype policy name."""
    if name not in PRECISIONS:
        raise ConfigError(f"trainer.precision={name!r} is not one of {', '.join(PRECISIONS)}")
    if name != "auto":
        return name
    return auto_precision(_gpu_compute_capabilities(), cpu_supports_bf16())


def auto_precision(gpu_capabilities: list[tuple[int, int]], cpu_bf16: bool) -> str:
    """What ``trainer.precision=auto`` picks for the given GPUs (compute capabilities) and CPU."""
    if gpu_capabilities:
        # bf16 tensor cores arrived with Ampere (compute capability 8.0).
        return "mixed_bfloat16" if min(gpu_capabilities) >= (8, 0) else "mixed_float16"
    return "mixed_bfloat16" if cpu_bf16 else "float32"


def configure_cpu_devices(count: int | None) -> None:
    """Split the CPU into ``count`` logical devices (must run before TensorFlow initialises its
    devices)."""
    if not count or count <= 1:
        return
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count
        )
    except RuntimeError as err:
        raise ConfigError(
            f"trainer.cpu_devices={count}: TensorFlow devices were already initialised ({err})"
        ) from err


def make_strategy(name: str):
    """Return a tf.distribute strategy for ``trainer.strategy``."""
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ConfigError(f"trainer.strategy={name!r} is not one of {', '.join(STRATEGIES)}")
    if name == "multiworker":
        # Before anything initialises TensorFlow's runtime: the strategy configures its collectives
        # first. The cluster comes from TF_CONFIG (export_tf_config writes it from SLURM's variables
        # under srun).
        from brats_seg.training.cluster import export_tf_config

        export_tf_config(name)
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.get_visible_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "none"
    if name == "none":
        return tf.distribute.get_strategy()
    if gpus:
        return tf.distribute.MirroredStrategy()
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=cpus)


def device_description() -> str:
    """The GPUs TensorFlow sees (it runs on them), else the CPU's model name and core count."""
    from brats_seg.training.gpus import gpu_models

    gpus = gpu_models()
    if gpus:
        names = sorted(set(gpus))
        if len(names) == 1:
            return f"{len(gpus)} x {names[0]}"
        return f"{len(gpus)} GPUs: {', '.join(gpus)}"
    return cpu_description()


def cpu_description() -> str:
    """The CPU's model name and logical core count (no TensorFlow import)."""
    bf16 = ", bf16" if cpu_supports_bf16() else ""
    return f"CPU: {cpu_model_name()} ({os.cpu_count()} cores{bf16})"
