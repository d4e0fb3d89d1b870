"""Self-check of a GPU machine in at most about 3 minutes: does brats-seg train and predict on its
GPU, how fast?

    pip install '.[gpu]'
    python scripts/check_gpu.py --data /path/to/BraTS2021     # a few real cases are enough
    python scripts/check_gpu.py                               # ../shared/data/brats-real, else
                                                              # synthetic 240x240
    python scripts/check_gpu.py --device auto --steps 2 --batch 2   # the check itself, on a CPU
                                                                    # (minutes)

It trains the study's base U-Net (model=unet, 31M parameters) on 240x240 slices for a few hundred
steps with trainer.precision=auto and trainer.device=gpu, through the very job `brats-seg train`
runs (brats_seg.jobs.train.train_and_evaluate on a config composed from the shipped configs, as the
CLI composes it), then segments one volume through `brats-seg predict`'s code, and prints the GPU,
the precision policy, training and prediction slices/s, and the peak GPU memory. On a machine where
TensorFlow sees no GPU it says so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED_REAL = REPO.parent / "shared" / "data" / "brats-real"
BUDGET_S = 180


def check_overrides(
    data_root: Path | None, out: Path, steps: int, batch: int, device: str = "gpu"
) -> list[str]:
    """The `brats-seg train` overrides of the check (data_root None: BraTS-sized synthetic data)."""
    # Every slice with tumour: the study's 3000-pixel threshold can leave a handful of cases
    # without one.
    data = (
        ["data=brats", f"data.root={data_root}", "data.selection.rule=tumour"]
        if data_root is not None
        else [
            "data=synthetic",
            "data.synth.cases=5",
            "data.synth.shape=[240,240,155]",
            "data.selection.threshold=3000",
        ]
    )
    return [
        *data,
        "model=unet",
        f"paths.output_root={out}",
        "trainer.precision=auto",
        f"trainer.device={device}",
        "trainer.epochs=2",
        f"trainer.steps_per_epoch={max(1, steps // 2)}",
        "trainer.validation_steps=2",
        f"trainer.batch_size={batch}",
        "trainer.tensorboard=false",
        "trainer.save_last=false",
        "trainer.verbose=2",
        "trainer.force=true",
        "evaluate.overlays=1",
    ]


def compose_check(data_root: Path | None, out: Path, steps: int, batch: int, device: str = "gpu"):
    from brats_seg.config import compose

    return compose("train", check_overrides(data_root, out, steps, batch, device))


def visible_gpus() -> list:
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


def peak_memory_gib() -> list[float]:
    import tensorflow as tf

    peaks = []
    for index, _ in enumerate(tf.config.get_visible_devices("GPU")):
        peaks.append(tf.config.experimental.get_memory_info(f"GPU:{index}")["peak"] / 2**30)
    return peaks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="a BraTS folder (default: ../shared/data/"
        "brats-real beside the repository, else synthetic volumes)",
    )
    parser.add_argument(
        "--steps", type=int, default=300, help="training steps in all (default 300)"
    )
    parser.add_argument("--batch", type=int, default=16, help="global batch size (default 16)")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: a temporary one)"
    )
    parser.add_argument(
        "--device",
        choices=("gpu", "auto"),
        default="gpu",
        help="auto also runs without a GPU: for trying the check itself (slow on a CPU)",
    )
    args = parser.parse_args(argv)

    data_root = args.data or (SHARED_REAL if SHARED_REAL.is_dir() else None)
    out = (args.out or Path(tempfile.gettempdir()) / f"brats-seg-check-gpu-{os.getpid()}").resolve()
    overrides = check_overrides(data_root, out, args.steps, args.batch, args.device)
    cfg = compose_check(data_root, out, args.steps, args.batch, args.device)
    print(f"check_gpu: brats-seg train {' '.join(overrides)}")

    gpus = visible_gpus()
    if not gpus and args.device == "gpu":
        import tensorflow as tf

        print(
            f"check_gpu: no GPU visible to TensorFlow {tf.__version__} on this machine "
            f"(CUDA build: {tf.test.is_built_with_cuda()}, CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}); nothing to check here. "
            "On a GPU machine: "
            "pip install '.[gpu]', then run this again."
        )
        return 0

    from brats_seg.data.discovery import find_cases
    from brats_seg.inference.predict import predict_cases
    from brats_seg.jobs.train import train_and_evaluate
    from brats_seg.runfolder import RunFolder

    start = time.perf_counter()
    run_dir = out / "check-gpu-run"
    train_and_evaluate(cfg, run_dir)
    trained = time.perf_counter()
    status = RunFolder(run_dir).read()

    case = find_cases(data_root)[0] if data_root is not None else None
    predicted = None
    if case is not None:
        before = time.perf_counter()
        predict_cases(run_dir, case.folder, out / "predicted", montage_slices=0)
        predicted = time.perf_counter() - before
    total = time.perf_counter() - start

    print(
        f"check_gpu: device {status.get('device')}; policy {status.get('precision')}; "
        f"{status.get('params'):,} parameters"
    )
    print(
        f"check_gpu: training {status.get('train_slices_per_s') or float('nan'):.1f} slices/s "
        "at 240x240 "
        f"(batch {args.batch}, last epoch); train + evaluate {trained - start:.0f} s"
    )
    if predicted is not None:
        import nibabel

        depth = nibabel.load(next(iter(case.images.values()))).shape[2]
        print(
            f"check_gpu: predicted {case.case_id} ({depth} slices) in {predicted:.1f} s, "
            "model loading "
            f"included: {depth / predicted:.1f} slices/s"
        )
    else:
        print(
            "check_gpu: no real volume to predict (pass --data); "
            "the job's evaluation predicted its test cases"
        )
    peaks = ", ".join(f"{peak:.2f} GiB" for peak in peak_memory_gib()) or "n/a (no GPU)"
    print(
        f"check_gpu: peak GPU memory {peaks}; total {total:.0f} s (budget {BUDGET_S} s); "
        f"run folder {run_dir}"
    )
    if total > BUDGET_S:
        print(
            f"check_gpu: took longer than {BUDGET_S} s; try --steps 200 or --batch 8",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
