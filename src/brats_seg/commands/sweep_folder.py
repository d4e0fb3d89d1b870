"""The arguments of the commands that summarise one sweep folder (cv-summary, learning-curve):
``DIR [out=DIR]``, read without a config file."""

from __future__ import annotations

from pathlib import Path

from brats_seg.errors import ConfigError


def sweep_folder_args(command: str, argv: list[str], example: str) -> tuple[Path, Path | None]:
    """The sweep folder and ``out`` (None: the sweep folder), or one line naming what is wrong."""
    dirs = [a for a in argv if "=" not in a]
    options = dict(a.split("=", 1) for a in argv if "=" in a)
    unknown = sorted(set(options) - {"out"})
    if unknown:
        raise ConfigError(f"{command}: unknown option {unknown[0]}= (valid: out=DIR)")
    if len(dirs) != 1:
        raise ConfigError(f"{command}: name one sweep folder (brats-seg {command} {example})")
    return Path(dirs[0]), Path(options["out"]) if options.get("out") else None
