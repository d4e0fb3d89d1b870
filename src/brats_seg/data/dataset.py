"""The data layer's entry point: ``prepare_data(cfg.data)`` finds the cases, builds or reuses the
slice cache and returns a ``PreparedData`` that training and evaluation read from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brats_seg.config_schema import to_plain
from brats_seg.data import cache
from brats_seg.data.discovery import CaseFiles, find_cases
from brats_seg.data.draws import draw_split
from brats_seg.data.folds import fold_seed, fold_settings, kfold_split, val_fraction_and_seed
from brats_seg.data.labels import NUM_CLASSES, LabelRules
from brats_seg.data.settings import PreprocessSettings, SelectionSettings
from brats_seg.data.split import group_cases, split_cases, split_fractions
from brats_seg.errors import ConfigError, DataError


@dataclass
class PreparedData:
    """A built slice cache plus the settings it was built with."""

    cache_dir: (
        Path  # the cache folder of this data set + settings (``<data.cache_dir>/<name>-<key>``)
    )
    root: Path  # where the cases were found
    name: str
    preprocess: PreprocessSettings
    selection: SelectionSettings
    metas: dict[str, dict]  # case id -> meta (see cache.py)
    split_cfg: dict = field(default_factory=dict)
    num_classes: int = NUM_CLASSES

    @classmethod
    def open(cls, cache_path: str | Path, split_cfg: Any = None) -> PreparedData:
        """Open a complete cache folder."""
        cache_path = Path(cache_path)
        if not cache.is_complete(cache_path):
            raise DataError(
                f"{cache_path}: not a complete brats-seg slice cache (no {cache.INDEX_FILE})"
            )
        index = cache.read_index(cache_path)
        preprocess = PreprocessSettings.from_record(index["preprocess"])
        selection = SelectionSettings.from_cfg(index["selection"])
        return cls(
            cache_path,
            Path(index["root"]),
            index["name"],
            preprocess,
            selection,
            index["cases"],
            to_plain(split_cfg) or {},
        )

    @property
    def case_ids(self) -> list[str]:
        return sorted(self.metas)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of every slice."""
        shapes = {tuple(m["slice_shape"]) for m in self.metas.values()}
        if len(shapes) != 1:
            detail = ", ".join(
                f"{c}: {'x'.join(map(str, m['slice_shape'][:2]))}" for c, m in self.metas.items()
            )
            raise DataError(
                f"cases under {self.root} have different {self.preprocess.plane} slice sizes "
                f"({detail}); set data.preprocess.crop.enabled=true with a "
                "data.preprocess.crop.size that fits all"
            )
        return shapes.pop()

    def split(self) -> dict[str, list[str]]:
        """Case ids per split (train/val/test), by patient, from ``data.split`` (fractions, or one
        fold)."""
        fingerprints = {c: m["fingerprint"] for c, m in self.metas.items()}
        split_cfg = to_plain(self.split_cfg) or {}
        if split_cfg.get("train_patients") is not None:
            return draw_split(
                group_cases(fingerprints),
                split_cfg["train_patients"],
                split_cfg["draw"],
                shuffle_seed=split_cfg.get("fold_seed"),
            )
        kfold = fold_settings(self.split_cfg)
        if kfold is not None:
            val, seed = val_fraction_and_seed(self.split_cfg)
            return kfold_split(
                group_cases(fingerprints),
                *kfold,
                val_fraction=val,
                seed=seed,
                shuffle_seed=fold_seed(self.split_cfg),
            )
        fractions, seed = split_fractions(self.split_cfg)
        return split_cases(fingerprints, fractions, seed)

    def case_meta(self, case_id: str) -> dict:
        try:
            return self.metas[case_id]
        except KeyError:
            raise DataError(
                f"case {case_id} is not in the prepared data ({self.cache_dir})"
            ) from None

    def one_case_per_patient(self, case_ids: list[str]) -> list[str]:
        """``case_ids`` without the second name of identical images (the same scan shipped twice),
        so that training does not draw such a patient twice as often as the others."""
        seen: set[str] = set()
        kept = []
        for case_id in case_ids:
            fingerprint = self.case_meta(case_id)["fingerprint"]
            if fingerprint not in seen:
                seen.add(fingerprint)
                kept.append(case_id)
        return kept

    def slice_count(self, case_ids: list[str]) -> int:
        """Selected slices over ``case_ids``."""
        return sum(len(self.case_meta(c)["selected"]) for c in case_ids)

    def class_counts(self, case_ids: list[str]) -> np.ndarray:
        """(4,) int64 pixels per class over the selected slices of ``case_ids``."""
        total = np.zeros(self.num_classes, dtype=np.int64)
        for case_id in case_ids:
            total += np.asarray(self.case_meta(case_id)["class_counts"], dtype=np.int64)
        return total

    def read_slices(self, case_id: str) -> tuple[np.ndarray, np.ndarray]:
        """Selected slices as read-only memory maps: x (N, H, W, C) float16, y (N, H, W) uint8."""
        self.case_meta(case_id)
        return cache.read_slices(self.cache_dir, case_id)

    def load_volume(self, case_id: str) -> cache.Volume:
        """``(x (S, H, W, C) float32, classes (X, Y, Z) uint8, meta)``: every slice of the plane,
        for evaluation."""
        return cache.load_volume(self.cache_dir, self.case_meta(case_id), self.preprocess)


def prepare_data(data_cfg: Any) -> PreparedData:
    """Find the cases of ``data_cfg`` (the composed ``data`` node; keys it lacks are
    configs/data/brats.yaml's), build or reuse their cache, open it."""
    from brats_seg.config import complete_data_cfg

    if _is_missing(data_cfg, "root"):
        raise ConfigError(NO_ROOT)
    cfg = complete_data_cfg(to_plain(data_cfg))
    root = _data_root(data_cfg, cfg)
    preprocess = PreprocessSettings.from_data_cfg(cfg)
    selection = SelectionSettings.from_cfg(cfg["selection"])
    cases = _chosen_cases(find_cases(root), cfg["cases"], root)
    _require_segmentations(cases)
    labels = LabelRules.from_cfg(cfg["labels"])
    path = cache.build_cache(
        Path(cfg["cache_dir"]),
        _safe_name(str(cfg["name"])),
        root,
        cases,
        preprocess,
        selection,
        int(cfg["workers"]),
        labels,
    )
    return PreparedData.open(path, cfg["split"])


NO_ROOT = (
    "data.root is not set: pass data.root=/path/to/BraTS (a folder holding BraTS case folders)"
)


def data_root(data_cfg: Any) -> Path:
    """The folder of the cases of ``data_cfg`` (e.g. a run's data node)."""
    from brats_seg.config import complete_data_cfg

    if _is_missing(data_cfg, "root"):
        raise ConfigError(NO_ROOT)
    return _data_root(data_cfg, complete_data_cfg(to_plain(data_cfg)))


def _data_root(data_cfg: Any, cfg: dict[str, Any]) -> Path:
    """The data folder: ``data.root``, or the synthetic data set's (written on first use)."""
    root = cfg["root"]
    if root in (None, ""):
        if cfg["name"] == "synthetic":
            from brats_seg.data.synthetic import ensure_synthetic_dataset

            return Path(ensure_synthetic_dataset(data_cfg)).resolve()
        raise ConfigError(NO_ROOT)
    root = Path(str(root)).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root {root}: no such folder")
    return root.resolve()


def _is_missing(cfg: Any, key: str) -> bool:
    try:
        from omegaconf import DictConfig, OmegaConf
    except ImportError:  # pragma: no cover
        return False
    return isinstance(cfg, DictConfig) and OmegaConf.is_missing(cfg, key)


def _chosen_cases(cases: list[CaseFiles], wanted: Any, root: Path) -> list[CaseFiles]:
    if wanted is None:
        return cases
    if isinstance(wanted, str) or not all(isinstance(w, str) for w in wanted):
        raise ConfigError(f"data.cases must be null or a list of case ids, got {wanted!r}")
    by_id = {c.case_id: c for c in cases}
    unknown = [w for w in wanted if w not in by_id]
    if unknown:
        raise ConfigError(f"data.cases: no case {', '.join(unknown)} under {root}")
    return [by_id[w] for w in sorted(set(wanted))]


def _require_segmentations(cases: list[CaseFiles]) -> None:
    for case in cases:
        if case.seg is None:
            raise DataError(
                f"{case.folder}: case {case.case_id} has no segmentation; needed for training"
            )


def _safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
