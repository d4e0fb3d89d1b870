"""Leave-one-patient-out cross-validation of a recipe on real BraTS cases, and its per-fold table.

    python scripts/cv_real.py --root ../shared/data/brats-real  # outer folds: the reported table
    python scripts/cv_real.py --root ../shared/data/brats-real --inner  # tuning folds (see below)

The outer mode runs one sweep, ``brats-seg train -m recipe=... data.split.folds=K
'data.split.fold=range(K)'``, where K defaults to the number of distinct patients (so each fold
holds one patient out), and then ``brats-seg cv-summary`` on the sweep folder.

The inner mode is for tuning without touching the patients a table reports: for every outer fold it
takes only that fold's training patients (``data.cases=[...]``) and trains on all but one of them,
scoring the one left out (inner fold ``i mod (K-1)`` of outer fold i). Compare settings on these
inner scores only; the outer fold's own patient is never seen. Extra ``key=value`` arguments go to
every training run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def brats_seg() -> list[str]:
    return [sys.executable, "-m", "brats_seg"]


def outer_folds(
    root: Path, recipe: str, folds: int | None, overrides: list[str]
) -> tuple[int, list[dict], dict[str, str]]:
    """K, the split of every outer fold and each case's patient fingerprint (this builds the slice
    cache once, if needed)."""
    from brats_seg.config import compose
    from brats_seg.data.dataset import prepare_data
    from brats_seg.data.split import group_cases

    base = [f"recipe={recipe}", f"data.root={root}", *overrides]
    cfg = compose("train", base)
    prepared = prepare_data(cfg.data)
    fingerprints = {c: m["fingerprint"] for c, m in prepared.metas.items()}
    groups = group_cases(fingerprints)
    k = folds or len(groups)
    splits = []
    for fold in range(k):
        cfg = compose("train", [*base, f"data.split.folds={k}", f"data.split.fold={fold}"])
        prepared.split_cfg = dict(cfg.data.split)
        splits.append(prepared.split())
    return k, splits, fingerprints


def run(cmd: list[str]) -> int:
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=REPO)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, required=True, help="folder of BraTS cases")
    parser.add_argument(
        "--out", type=Path, help="sweep folder (default outputs/cv/<recipe>[-inner])"
    )
    parser.add_argument("--recipe", default="real_cpu")
    parser.add_argument("--folds", type=int, help="K (default: one fold per distinct patient)")
    parser.add_argument(
        "--inner", action="store_true", help="tuning folds inside each outer fold's training set"
    )
    args, overrides = parser.parse_known_args()
    root = args.root.resolve()
    out = (
        args.out or REPO / "outputs" / "cv" / (args.recipe + ("-inner" if args.inner else ""))
    ).resolve()
    common = [f"recipe={args.recipe}", f"data.root={root}", *overrides]
    status = 0
    if not args.inner:
        k, _, _ = outer_folds(root, args.recipe, args.folds, overrides)
        status = run(
            [
                *brats_seg(),
                "train",
                "-m",
                *common,
                f"data.split.folds={k}",
                f"data.split.fold=range({k})",
                f"hydra.sweep.dir={out}",
                "hydra.sweep.subdir=fold${data.split.fold}",
            ]
        )
    else:
        k, splits, fingerprints = outer_folds(root, args.recipe, args.folds, overrides)
        for i, split in enumerate(splits):
            cases = sorted(split["train"] + split["val"])
            inner_k = len({fingerprints[c] for c in cases})  # leave one training patient out
            status |= run(
                [
                    *brats_seg(),
                    "train",
                    "-m",
                    *common,
                    f"data.cases=[{','.join(cases)}]",
                    f"data.split.folds={inner_k}",
                    f"data.split.fold={i % inner_k}",
                    f"hydra.sweep.dir={out}/outer{i}",
                    "hydra.sweep.subdir=inner${data.split.fold}",
                ]
            )
    summary = run([*brats_seg(), "cv-summary", str(out)])
    return status or summary


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
