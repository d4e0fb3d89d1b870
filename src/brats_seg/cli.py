"""The ``brats-seg`` command: a thin dispatcher that imports nothing heavy until a subcommand
runs."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": "train one configuration (or a sweep with -m) and evaluate it on held-out patients",
    "evaluate": "re-evaluate a run folder, or score a folder of predicted segmentations",
    "predict": "segment new patients: NIfTI in, NIfTI out",
    "table": "rebuild the study's results table from run or sweep folders",
    "compare": "paired test of two runs or groups of runs: Wilcoxon p, bootstrap CI",
    "report": "one self-contained HTML page of runs or sweeps: table, charts, overlays",
    "export": "the run's best model as a TensorFlow SavedModel that plain TensorFlow serves",
    "cv-summary": "per-fold scores of a cross-validation sweep, with mean and sd over folds",
    "learning-curve": "quality against the number of training patients, from a sweep of draws",
    "eda": "explore a data set: label statistics, histograms, overlays, a montage",
    "synth": "write a synthetic BraTS-like data set as .nii.gz",
    "models": "list every model config with its parameter count and GFLOPs",
    "view": "look at cases in 3D in the browser: four modalities, truth and prediction (NiiVue)",
}

# Commands that run models; their processes keep freed memory (see brats_seg.memory).
TENSORFLOW_COMMANDS = ("train", "evaluate", "predict", "report", "export", "view")

USAGE = "usage: brats-seg {" + ",".join(COMMANDS) + "} [key=value ...]"


def _help() -> str:
    lines = [
        USAGE,
        "",
        "2D brain-tumour segmentation of BraTS MRI: an experiment runner.",
        "",
        "commands:",
    ]
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


def _shell_completion(args: list[str]) -> int:
    """`brats-seg -sc query=bash`: what the script of `brats-seg CMD -sc install=bash` runs on TAB.

    The first word completes to a command; after it, the command's own Hydra app completes the rest
    of the line (config groups, keys, values) with the command word taken out, as if it were the
    program.
    """
    import os
    import re

    if not (args and args[0].startswith("query=")):
        # install=bash, uninstall=bash: the same script for every command
        return int(importlib.import_module("brats_seg.commands.train").main(["-sc", *args]) or 0)
    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    if len(words) < 2 or (len(words) == 2 and not line.endswith(" ")):
        typed = words[1] if len(words) == 2 else ""
        print(" ".join(name for name in COMMANDS if name.startswith(typed)))
        return 0
    command = words[1]
    if command not in COMMANDS or command == "table":  # table takes folders: the shell does those
        return 0
    rest = re.match(r"\s*\S+\s+\S+(.*)$", line, re.DOTALL).group(1)
    os.environ["COMP_LINE"] = words[0] + rest
    return int(importlib.import_module(f"brats_seg.commands.{command}").main(["-sc", *args]) or 0)


# SIGTERMs seen by the handler: one raised where Python cannot propagate it (a finaliser or a
# callback, which only prints "Exception ignored") must still end the command as terminated.
_signals_received: list[int] = []


def _terminate_as_exception() -> None:
    """SIGTERM raises ``Terminated`` in the main thread, so a command cleans up as after Ctrl-C."""
    import signal

    from brats_seg.errors import Terminated

    def _raise(signum, frame):
        _signals_received.append(signum)
        raise Terminated(f"signal {signum}")

    signal.signal(signal.SIGTERM, _raise)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_help())
        return 0
    if argv[0] in ("-sc", "--shell-completion"):
        return _shell_completion(argv[1:])
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

    from brats_seg.errors import BratsSegError, Terminated

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if command in TENSORFLOW_COMMANDS:
        from brats_seg.memory import keep_freed_memory

        keep_freed_memory()
    # Keras warns that fit(shuffle=True) is ignored for tf.data; the pipeline shuffles by itself.
    warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed.*")
    module = importlib.import_module(f"brats_seg.commands.{command.replace('-', '_')}")
    _terminate_as_exception()
    try:
        code = int(module.main(rest) or 0)
        if _signals_received:
            raise Terminated(f"signal {_signals_received[0]}")
        return code
    except BratsSegError as err:
        print(f"brats-seg {command}: error: {err}", file=sys.stderr)
        return 1
    except Terminated:
        print(f"brats-seg {command}: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"brats-seg {command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the output went to a pager or `head` that stopped reading
        sys.stderr.close()
        return 1
    except Exception as err:  # not ours, not the user's: still one line, the traceback on request
        from brats_seg.config import FULL_ERROR_ENV, one_line, user_wants_traces

        if user_wants_traces():
            raise
        print(
            f"brats-seg {command}: error: {type(err).__name__}: {one_line(err)} "
            f"({FULL_ERROR_ENV}=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
