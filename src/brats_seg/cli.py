"""The ``brats-seg`` command: a thin dispatcher that imports nothing heavy until a subcommand runs."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": "train one configuration (or a sweep with -m) and evaluate it on held-out patients",
    "evaluate": "re-evaluate a run folder, or score a folder of predicted segmentations",
    "predict": "segment new patients: NIfTI in, NIfTI out",
    "table": "rebuild the study's results table from run or sweep folders",
    "cv-summary": "per-fold scores of a cross-validation sweep, with mean and sd over folds",
    "eda": "explore a data set: label statistics, histograms, overlays, a montage",
    "synth": "write a synthetic BraTS-like data set as .nii.gz",
    "models": "list every model config with its parameter count and GFLOPs",
}

# Commands that run models; their processes keep freed memory (see brats_seg.memory).
TENSORFLOW_COMMANDS = ("train", "evaluate", "predict")

USAGE = "usage: brats-seg {" + ",".join(COMMANDS) + "} [key=value ...]"


def _help() -> str:
    lines = [USAGE, "", "2D brain-tumour segmentation of BraTS MRI: an experiment runner.", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, text in COMMANDS.items()]
    lines += [
        "",
        "Options use Hydra's key=value form, e.g.",
        "  brats-seg train model=unet3pp loss=ell",
        "  brats-seg eda data=brats data.root=/path/to/BraTS2021",
        "  brats-seg train -m 'experiment=glob(*)' debug=smoke",
        "`brats-seg COMMAND --help` shows that command's configuration.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_help())
        return 0
    if argv[0] == "--version":
        from brats_seg import __version__

        print(f"brats-seg {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"brats-seg: unknown command '{command}'\n{USAGE}", file=sys.stderr)
        return 2
    import os
    import warnings

    from brats_seg.errors import BratsSegError

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if command in TENSORFLOW_COMMANDS:
        from brats_seg.memory import keep_freed_memory

        keep_freed_memory()
    # Keras warns that fit(shuffle=True) is ignored for tf.data; the pipeline shuffles by itself.
    warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed.*")
    module = importlib.import_module(f"brats_seg.commands.{command.replace('-', '_')}")
    try:
        return int(module.main(rest) or 0)
    except BratsSegError as err:
        print(f"brats-seg {command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"brats-seg {command}: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
