"""How the commands that read finished runs take their arguments: folders (or globs) as plain words,
options as ``key=value``. ``table``, ``report`` and ``compare`` compose their options from
``configs/<command>.yaml``; ``cv-summary`` and ``learning-curve`` take only ``out=DIR``."""

from __future__ import annotations

from pathlib import Path

from brats_seg.errors import ConfigError


def split_words(argv: list[str]) -> tuple[list[str], list[str]]:
    """The plain words (folders, globs) and the ``key=value`` options, in their order."""
    return [a for a in argv if "=" not in a], [a for a in argv if "=" in a]


def composed_options(command: str, overrides: list[str]):
    """The command's options composed from its config and checked against their schema, or one
    line naming the option that is wrong (before any folder is read)."""
    from brats_seg.config import check_bool_overrides, check_options, compose, one_line

    try:
        cfg = compose(command, overrides)
    except Exception as err:  # Hydra's override errors, with the OmegaConf cause they wrap
        raise ConfigError(one_line(err)) from err
    check_bool_overrides(cfg, overrides)
    check_options(cfg)
    return cfg


def folders_and_options(command: str, argv: list[str], example: str) -> tuple[list[Path], object]:
    """At least one run or sweep folder, and the command's composed options."""
    words, overrides = split_words(argv)
    if not words:
        raise ConfigError(f"name at least one run or sweep folder (brats-seg {command} {example})")
    return [Path(w) for w in words], composed_options(command, overrides)


def sweep_folder_args(command: str, argv: list[str], example: str) -> tuple[Path, Path | None]:
    """The sweep folder and ``out`` (None: the sweep folder), or one line naming what is wrong."""
    dirs, overrides = split_words(argv)
    options = dict(a.split("=", 1) for a in overrides)
    unknown = sorted(set(options) - {"out"})
    if unknown:
        raise ConfigError(f"{command}: unknown option {unknown[0]}= (valid: out=DIR)")
    if len(dirs) != 1:
        raise ConfigError(f"{command}: name one sweep folder (brats-seg {command} {example})")
    return Path(dirs[0]), Path(options["out"]) if options.get("out") else None
