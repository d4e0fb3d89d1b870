"""Runs that differ only by seed or fold, grouped: mean ± sd and n of each table metric over the
group.

Two runs belong to one group when their config.yaml files are equal once every key named ``seed`` or
``fold`` (at any depth: the run's seed, the split's, the synthetic set's, a k-fold index) and the
``paths`` section (where outputs go, not what ran) are left out."""

from __future__ import annotations

import json
from typing import Any

IGNORED_KEYS = ("seed", "fold")
IGNORED_SECTIONS = ("paths",)


def _strip(node: Any, top: bool = False) -> Any:
    if isinstance(node, dict):
        return {
            k: _strip(v)
            for k, v in sorted(node.items())
            if k not in IGNORED_KEYS and not (top and k in IGNORED_SECTIONS)
        }
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def group_key(cfg: dict[str, Any]) -> str:
    """The config with seeds, folds and paths left out, as one canonical string."""
    return json.dumps(_strip(cfg, top=True), sort_keys=True, default=str)


def varying(cfg: dict[str, Any]) -> dict[str, Any]:
    """The values of the seed and fold keys of a config, by dotted path, e.g. {"seed": 1,
    "data.split.seed": 1}."""
    found: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                path = f"{prefix}{k}"
                if k in IGNORED_KEYS and not isinstance(v, (dict, list)):
                    found[path] = v
                elif not (prefix == "" and k in IGNORED_SECTIONS):
                    walk(v, path + ".")

    walk(cfg, "")
    return found
