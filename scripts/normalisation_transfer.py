"""Does a per-case intensity normalisation carry tumour appearance from some patients to another?

    python scripts/normalisation_transfer.py --root ../shared/data/brats-real

A quick proxy for the question, without a U-Net: for each normalisation, a gradient-boosted voxel
classifier (scikit-learn) learns "tumour or not" from the four modalities of the other patients,
each as it is and smoothed at 2 and 6 voxels (for some context), and predicts every brain voxel of
the held-out patient (leave one patient out; cases with identical images are one patient, the
first one found is used). It prints the whole-tumour Dice per held-out patient. A normalisation
under which no held-out patient improves will not rescue a U-Net either.

Normalisations, per modality over the brain's voxels: zscore (mean, sd), median_iqr (median,
interquartile range), rank (each voxel's percentile), percentile (the 1st-99th range to [0, 1]),
mode (divided by the smoothed histogram's peak).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

NORMALISATIONS = ("zscore", "median_iqr", "rank", "percentile", "mode")
SMOOTHING = (0.0, 2.0, 6.0)


def histogram_mode(values: np.ndarray) -> float:
    lo, hi = np.percentile(values, [0.5, 99.5])
    counts, edges = np.histogram(values, bins=200, range=(lo, hi))
    peak = int(np.argmax(ndimage.gaussian_filter1d(counts.astype(float), 3)))
    return 0.5 * (edges[peak] + edges[peak + 1])


def normalise(volume: np.ndarray, brain: np.ndarray, kind: str) -> np.ndarray:
    values = volume[brain].astype(np.float64)
    out = np.zeros(volume.shape, np.float32)
    if kind == "zscore":
        scaled = (values - values.mean()) / max(values.std(), 1e-9)
    elif kind == "median_iqr":
        q1, q2, q3 = np.percentile(values, [25, 50, 75])
        scaled = (values - q2) / max(q3 - q1, 1e-9)
    elif kind == "rank":
        scaled = np.argsort(np.argsort(values)) / values.size
    elif kind == "percentile":
        lo, hi = np.percentile(values, [1, 99])
        scaled = (values - lo) / max(hi - lo, 1e-9)
    elif kind == "mode":
        scaled = values / max(histogram_mode(values), 1e-9) - 1.0
    else:
        raise ValueError(f"unknown normalisation {kind!r}")
    out[brain] = scaled
    return out


def voxel_features(image: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(brain voxels, features) and the brain mask of an (X, Y, Z, 4) image."""
    brain = np.any(image != 0, axis=-1)
    columns = []
    for c in range(image.shape[-1]):
        channel = normalise(image[..., c], brain, kind)
        for sigma in SMOOTHING:
            smooth = ndimage.gaussian_filter(channel, sigma) if sigma else channel
            columns.append(smooth[brain])
    return np.stack(columns, axis=1), brain


def transfer(
    root: Path, kinds: list[str], samples: int, seed: int, iterations: int = 100
) -> dict[str, dict[str, float]]:
    """Whole-tumour Dice per normalisation and held-out patient."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from brats_seg.data.discovery import find_cases
    from brats_seg.data.nifti import load_case
    from brats_seg.data.split import content_fingerprint, group_cases

    loaded = {}
    for case in find_cases(root):
        one = load_case(case)
        if one.seg is not None:
            loaded[case.case_id] = one
    fingerprints = {c: content_fingerprint(one.image) for c, one in loaded.items()}
    patients = [group[0] for group in group_cases(fingerprints)]
    if len(patients) < 2:
        raise SystemExit(f"{root}: needs segmented cases of at least two patients")
    rng = np.random.default_rng(seed)
    results: dict[str, dict[str, float]] = {}
    for kind in kinds:
        data = {}
        for case_id in patients:
            features, brain = voxel_features(loaded[case_id].image, kind)
            data[case_id] = (features, loaded[case_id].seg[brain] > 0)
        results[kind] = {}
        for held_out in patients:
            xs, ys = [], []
            for case_id in patients:
                if case_id == held_out:
                    continue
                features, labels = data[case_id]
                pick = rng.choice(len(labels), min(samples, len(labels)), replace=False)
                xs.append(features[pick])
                ys.append(labels[pick])
            model = HistGradientBoostingClassifier(max_iter=iterations, random_state=seed)
            model.fit(np.concatenate(xs), np.concatenate(ys))
            features, truth = data[held_out]
            predicted = model.predict_proba(features)[:, 1] > 0.5
            total = predicted.sum() + truth.sum()
            dice = 2.0 * np.sum(predicted & truth) / total if total else 1.0
            results[kind][held_out] = round(float(dice), 3)
        print(
            f"{kind:<11} WT Dice "
            + ", ".join(f"{c} {d:.3f}" for c, d in results[kind].items())
            + f"; mean {np.mean(list(results[kind].values())):.3f}",
            flush=True,
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, required=True, help="folder of BraTS cases")
    parser.add_argument("--normalisations", default=",".join(NORMALISATIONS))
    parser.add_argument("--samples", type=int, default=60000, help="training voxels per patient")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=100, help="boosting iterations")
    args = parser.parse_args()
    kinds = [k for k in args.normalisations.split(",") if k]
    unknown = sorted(set(kinds) - set(NORMALISATIONS))
    if unknown:
        parser.error(
            f"--normalisations: unknown {unknown[0]!r} (valid: {', '.join(NORMALISATIONS)})"
        )
    transfer(args.root.resolve(), kinds, args.samples, args.seed, args.iterations)
    return 0


if __name__ == "__main__":
    sys.exit(main())
