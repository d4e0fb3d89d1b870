"""Find BraTS cases on disk: which files make up a case and which label convention its names imply.

Two naming schemes are recognised (``.nii`` or ``.nii.gz``):

* BraTS 2017-2021: ``<case>_t1``, ``<case>_t1ce``, ``<case>_t2``, ``<case>_flair``, ``<case>_seg``
  (enhancing tumour is label 4: convention ``brats2021``);
* BraTS 2023 and later: ``<case>-t1n``, ``<case>-t1c``, ``<case>-t2w``, ``<case>-t2f``,
  ``<case>-seg`` (enhancing tumour is label 3: convention ``brats2023``).

The labels a naming implies are what ``data.labels.convention=auto`` reads; labels.py has the
conventions, and the rule for 2023 names over BraTS 2024 post-treatment labels.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from brats_seg.errors import DataError

# Channel order of every image stack this project builds.
MODALITIES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")
FLAIR_CHANNEL = MODALITIES.index("flair")  # the input channel shown under overlays
CONVENTIONS: tuple[str, ...] = ("brats2021", "brats2023")

# File-name suffix (as written on disk) -> canonical key, per convention.
SUFFIXES: dict[str, dict[str, str]] = {
    "brats2021": {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair", "seg": "seg"},
    "brats2023": {"t1n": "t1", "t1c": "t1ce", "t2w": "t2", "t2f": "flair", "seg": "seg"},
}
SEPARATORS: dict[str, str] = {"brats2021": "_", "brats2023": "-"}

_PATTERNS: dict[str, re.Pattern[str]] = {
    convention: re.compile(
        rf"^(?P<case>.+){re.escape(SEPARATORS[convention])}(?P<suffix>{'|'.join(SUFFIXES[convention])})\.nii(\.gz)?$",
        re.IGNORECASE,
    )
    for convention in CONVENTIONS
}


@dataclass(frozen=True)
class CaseFiles:
    """The files of one case: four images in the canonical channel order plus an optional
    segmentation."""

    case_id: str
    folder: Path
    images: dict[str, Path] = field(hash=False)
    seg: Path | None
    convention: str

    @property
    def files(self) -> list[Path]:
        """Every file of the case: the images in channel order, then the segmentation if there is
        one."""
        return [self.images[m] for m in MODALITIES] + ([self.seg] if self.seg is not None else [])


def file_name(case_id: str, key: str, convention: str, ext: str = ".nii.gz") -> str:
    """The on-disk name of modality ``key`` (canonical: t1, t1ce, t2, flair, seg) of a case."""
    suffix = next(s for s, k in SUFFIXES[convention].items() if k == key)
    return f"{case_id}{SEPARATORS[convention]}{suffix}{ext}"


def parse_file_name(name: str) -> tuple[str, str, str] | None:
    """``(case_id, canonical key, convention)`` for a BraTS file name, or None for any other
    file."""
    for convention, pattern in _PATTERNS.items():
        match = pattern.match(name)
        if match:
            key = SUFFIXES[convention][match["suffix"].lower()]
            return match["case"], key, convention
    return None


def cases_in_folder(folder: Path, names: list[str]) -> list[CaseFiles]:
    """The cases whose files sit directly in ``folder`` (``names``: the folder's file names)."""
    groups: dict[tuple[str, str], dict[str, Path]] = {}
    for name in sorted(names):
        parsed = parse_file_name(name)
        if parsed is None:
            continue
        case_id, key, convention = parsed
        group = groups.setdefault((case_id, convention), {})
        if key in group:
            raise DataError(
                f"{folder}: two files for {key} of case {case_id}: {group[key].name} and {name}"
            )
        group[key] = folder / name
    cases = []
    for (case_id, convention), group in sorted(groups.items()):
        if not any(m in group for m in MODALITIES):
            continue  # a lone segmentation (for example a prediction) is not a case
        missing = [m for m in MODALITIES if m not in group]
        if missing:
            raise DataError(
                f"{folder}: case {case_id} has no {', '.join(missing)} image (expected "
                f"{file_name(case_id, missing[0], convention, '.nii[.gz]')})"
            )
        images = {m: group[m] for m in MODALITIES}
        cases.append(CaseFiles(case_id, folder, images, group.get("seg"), convention))
    return cases


def find_cases(root: str | os.PathLike) -> list[CaseFiles]:
    """Every case under ``root`` at any depth (e.g. ``HGG/`` and ``LGG/`` subfolders), sorted by
    case id."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    cases: list[CaseFiles] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        cases.extend(cases_in_folder(Path(dirpath), filenames))
    if not cases:
        raise DataError(
            f"{root}: no BraTS case found (expected files such as "
            "<case>_t1.nii.gz ... <case>_seg.nii.gz "
            "or <case>-t1n.nii.gz ... <case>-seg.nii.gz)"
        )
    _check_unique_ids(cases)
    return sorted(cases, key=lambda c: c.case_id)


def find_case(folder: str | os.PathLike) -> CaseFiles:
    """The single case whose files sit directly in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    cases = cases_in_folder(folder, [p.name for p in folder.iterdir() if p.is_file()])
    if not cases:
        raise DataError(
            f"{folder}: no BraTS case in this folder "
            "(expected <case>_t1.nii.gz ... or <case>-t1n.nii.gz ...)"
        )
    if len(cases) > 1:
        raise DataError(
            f"{folder}: holds {len(cases)} cases "
            f"({', '.join(c.case_id for c in cases)}); expected one"
        )
    return cases[0]


def _check_unique_ids(cases: list[CaseFiles]) -> None:
    seen: dict[str, Path] = {}
    for case in cases:
        if case.case_id in seen:
            raise DataError(
                f"case id {case.case_id} occurs twice: in {seen[case.case_id]} and in {case.folder}"
            )
        seen[case.case_id] = case.folder
