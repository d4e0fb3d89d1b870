"""Which GPUs a job uses: ``trainer.device``, one GPU per parallel job, memory growth, and their
names.

Runs before TensorFlow initialises its devices. Memory growth is always on, so two jobs can share a
GPU (TensorFlow would otherwise take nearly all of its memory at the first op). Jobs that share a
machine through the joblib launcher each take a GPU of their own: a file lock per GPU in the
machine's temporary folder marks it as taken for the life of the process; when every GPU is taken,
the next job shares one, round-robin.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from brats_seg.config_schema import Device, JobGpus, choices
from brats_seg.errors import ConfigError

DEVICES = choices(Device)
JOB_GPUS = choices(JobGpus)

# The slot this process claimed (its lock stays held until the process exits), so a reused joblib
# worker keeps the GPU it started with.
_claimed: dict[str, object] = {}


class GpuSlots:
    """A lock file per GPU under ``lock_dir``; ``claim`` returns a GPU no other process holds."""

    def __init__(self, names: list[str], lock_dir: str | Path | None = None):
        self.names = names
        default = Path(tempfile.gettempdir()) / f"brats-seg-gpus-{os.getuid()}"
        self.lock_dir = Path(lock_dir) if lock_dir is not None else default
        self.held = None

    def claim(self) -> int:
        from filelock import FileLock, Timeout

        self.lock_dir.mkdir(parents=True, exist_ok=True)
        for index, name in enumerate(self.names):
            lock = FileLock(str(self.lock_dir / f"gpu-{_safe(name)}.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            self.held = lock
            return index
        return self._round_robin()

    def _round_robin(self) -> int:
        from filelock import FileLock

        counter = self.lock_dir / "shared-counter"
        with FileLock(str(counter) + ".lock"):
            text = counter.read_text().strip() if counter.exists() else ""
            turn = int(text) if text.isdigit() else 0
            counter.write_text(f"{turn + 1}\n")
        return turn % len(self.names)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _visible_names(count: int) -> list[str]:
    """Stable names of the visible GPUs for the lock files: CUDA_VISIBLE_DEVICES, else indices."""
    listed = [
        entry.strip()
        for entry in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
        if entry.strip()
    ]
    return listed if len(listed) == count else [str(i) for i in range(count)]


def check_options(device: str, job_gpus: str) -> None:
    if device not in DEVICES:
        raise ConfigError(f"trainer.device={device!r} is not one of {', '.join(DEVICES)}")
    if job_gpus not in JOB_GPUS:
        raise ConfigError(f"trainer.job_gpus={job_gpus!r} is not one of {', '.join(JOB_GPUS)}")


def configure_gpus(
    device: str = "auto", job_gpus: str = "auto", parallel: bool = False
) -> list[str]:
    """Set which GPUs TensorFlow uses, with memory growth; return their model names (empty: CPU
    only).

    ``device``: auto (GPUs if any), cpu (hide them), gpu (a one-line ConfigError when none is
    visible).
    ``job_gpus``: all (every visible GPU), one (a GPU of its own), auto (one when ``parallel``:
    several jobs share this machine through the joblib launcher).
    """
    import tensorflow as tf

    check_options(device, job_gpus)
    physical = tf.config.list_physical_devices("GPU")
    try:
        if device == "cpu":
            tf.config.set_visible_devices([], "GPU")
        elif len(physical) > 1 and (job_gpus == "one" or (job_gpus == "auto" and parallel)):
            if "slots" not in _claimed:
                slots = GpuSlots(_visible_names(len(physical)))
                _claimed["index"] = slots.claim()
                _claimed["slots"] = slots
            tf.config.set_visible_devices([physical[int(_claimed["index"])]], "GPU")
        for gpu in tf.config.get_visible_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:
        # Devices already initialised in this process (an earlier job of a reused worker): that
        # choice stands.
        pass
    visible = tf.config.get_visible_devices("GPU")
    if device == "gpu" and not visible:
        shown = os.environ.get("CUDA_VISIBLE_DEVICES")
        where = (
            f"CUDA_VISIBLE_DEVICES={shown!r}"
            if shown is not None
            else "no CUDA_VISIBLE_DEVICES set"
        )
        raise ConfigError(
            f"trainer.device=gpu: TensorFlow sees no GPU ({where}; TensorFlow "
            f"{tf.__version__} built with CUDA: {tf.test.is_built_with_cuda()}); install the "
            "CUDA libraries with pip install 'brats-seg[gpu]', or use trainer.device=auto"
        )
    return gpu_models(visible)


def gpu_models(devices=None) -> list[str]:
    """The model name of each visible GPU (e.g. "NVIDIA A100-SXM4-80GB")."""
    import tensorflow as tf

    devices = tf.config.get_visible_devices("GPU") if devices is None else devices
    names = []
    for gpu in devices:
        details = tf.config.experimental.get_device_details(gpu)
        names.append(str(details.get("device_name", gpu.name)))
    return names
