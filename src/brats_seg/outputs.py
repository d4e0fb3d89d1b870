"""Where commands write their outputs, so that no command removes or replaces what it did not write.

Every folder a command writes into holds a marker, ``.brats-seg-output.json``, that records which
command wrote which of its entries (``files``: relative path -> command) and, for a folder that is
one command's output as a whole, which command that is (``whole``). Two ways of writing use it:

- ``staged_output``: the folder is the command's output as a whole (export, predict, eda, an
  ensemble's evaluation). It is built in a temporary sibling and swapped in, so the folder holds the
  old complete output or the new one, never a mix. An existing folder is replaced only if it is
  empty or an earlier output of the same command holding nothing it did not write; anything else is
  refused before any work, naming the folder and what is in it.
- ``files_beside``: the command writes a few named files into a folder that holds other things
  (table, cv-summary, report, compare, a scoring of predictions, synth's cases). Each file is
  written atomically; a file of that name that the command did not write is refused; nothing else
  in the folder is touched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from brats_seg.atomic import atomic_dir, write_json
from brats_seg.errors import ConfigError, DataError

MARKER = ".brats-seg-output.json"
_SHOWN = 4  # names quoted in a refusal


def read_marker(folder: Path) -> dict[str, Any]:
    """The folder's record of what brats-seg wrote there (empty when it has none)."""
    path = Path(folder) / MARKER
    if not path.is_file():
        return {"whole": None, "files": {}}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        files = record["files"]
        if not isinstance(files, dict):
            raise TypeError("files is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path}: damaged record of what brats-seg wrote here ({err})") from err
    return {"whole": record.get("whole"), "files": dict(files)}


def entries(folder: Path) -> list[str]:
    """Every file and folder below ``folder`` as a relative POSIX path, the marker excluded."""
    folder = Path(folder)
    found = []
    for parent, dirs, files in os.walk(folder):
        rel = Path(parent).relative_to(folder)
        for name in sorted(dirs) + sorted(files):
            path = (rel / name).as_posix()
            if path != MARKER:
                found.append(path)
    return sorted(found)


def _shown(names: list[str]) -> str:
    """A few of ``names``, a folder standing for what is below it."""
    listed = set(names)
    top = sorted(n for n in listed if not any(str(p) in listed for p in PurePosixPath(n).parents))
    more = f" and {len(top) - _SHOWN} more" if len(top) > _SHOWN else ""
    return ", ".join(top[:_SHOWN]) + more


def check_output_dir(folder: str | os.PathLike, command: str, option: str = "out") -> None:
    """Refuse ``folder`` as the whole output of ``command`` unless it is absent, empty, or an
    earlier output of ``command`` that holds only what ``command`` wrote."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{option}={folder}: exists and is not a folder")
    if not folder.is_dir():
        return
    present = entries(folder)
    if not present and not (folder / MARKER).exists():
        return
    record = read_marker(folder)
    foreign = [p for p in present if record["files"].get(p) != command]
    other = record["whole"] not in (None, command)
    if foreign or other:
        held = (
            f"the output of brats-seg {record['whole']} ({_shown(present)})"
            if other
            else f"what brats-seg {command} did not write ({_shown(foreign)})"
        )
        raise ConfigError(
            f"{option}={folder}: holds {held}; brats-seg {command} replaces only its own earlier "
            "output: choose a new or empty folder"
        )


@contextmanager
def staged_output(folder: str | os.PathLike, command: str, option: str = "out") -> Iterator[Path]:
    """Yield an empty staging folder beside ``folder``; if the block succeeds, it becomes
    ``folder`` (with its marker), replacing an earlier output of ``command``. On failure the staging
    folder is removed and ``folder`` is left as it was."""
    folder = Path(os.path.abspath(folder))  # "." too can be renamed by its full name
    check_output_dir(folder, command, option)
    with atomic_dir(folder) as tmp:
        yield tmp
        write_json(
            tmp / MARKER,
            {"whole": command, "files": {path: command for path in entries(tmp)}},
        )
        check_output_dir(folder, command, option)  # nothing was added while it was built


def check_files_beside(
    folder: str | os.PathLike,
    names: Iterable[str],
    command: str,
    option: str = "out",
    own: Callable[[Path], bool] | None = None,
) -> None:
    """Refuse writing ``names`` into ``folder`` where one of them exists and was not written by
    ``command`` (per the marker, or ``own(path)`` for outputs that carry their own mark)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{option}={folder}: exists and is not a folder")
    if not folder.is_dir():
        return
    record = read_marker(folder)
    taken = [
        name
        for name in names
        if (folder / name).exists()
        and record["files"].get(name) != command
        and not (own is not None and own(folder / name))
    ]
    if taken:
        raise ConfigError(
            f"{option}={folder}: {_shown(taken)} "
            f"{'is' if len(taken) == 1 else 'are'} there already and not written by "
            f"brats-seg {command}; move {'it' if len(taken) == 1 else 'them'} or choose "
            "another folder"
        )


@contextmanager
def files_beside(
    folder: str | os.PathLike,
    names: Iterable[str],
    command: str,
    option: str = "out",
    own: Callable[[Path], bool] | None = None,
) -> Iterator[Path]:
    """Check ``names`` (see ``check_files_beside``), record them as ``command``'s in the folder's
    marker and yield the folder, into which the block writes them (each atomically).

    The names are recorded before they are written, so that an interrupted command still owns what
    it left; a block that fails gives up its claim on the names it did not write."""
    folder = Path(folder)
    names = list(names)
    check_files_beside(folder, names, command, option, own)
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder):  # two commands writing into one folder at once keep both records
        check_files_beside(folder, names, command, option, own)
        record = read_marker(folder)
        if any(record["files"].get(name) != command for name in names):
            record["files"].update({name: command for name in names})
            write_json(folder / MARKER, record)
    try:
        yield folder
    except BaseException:
        with _locked(folder):
            record = read_marker(folder)
            unwritten = [n for n in names if not (folder / n).exists()]
            for name in unwritten:
                record["files"].pop(name, None)
            if unwritten:
                write_json(folder / MARKER, record)
        raise


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on the folder itself (no lock file is left in it)."""
    import fcntl

    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
