"""PREPROCESS_VERSION (part of the cache key) is tied to what the code outputs for a fixed case.

When this test fails, the preprocessing output changed: bump PREPROCESS_VERSION in
data/preprocess.py (so that old caches are not reused) and record the new digest under the new
version below.
"""

from __future__ import annotations

import hashlib

import numpy as np

from brats_seg.data.cache import X_DTYPE
from brats_seg.data.discovery import find_case
from brats_seg.data.nifti import load_case
from brats_seg.data.preprocess import PREPROCESS_VERSION, preprocess_case
from brats_seg.data.selection import select_slices
from brats_seg.data.settings import SelectionSettings

from conftest import blob_case, preprocess_settings, write_case

# version -> sha256 of the fixed case's outputs under the settings below
OUTPUT_DIGESTS = {
    1: "373a10531f81262a069c4cf97fbad175449977259f3a015a7f8c7238eb5f11ee",
}

# configs/data/brats.yaml's preprocessing with these changes
SETTINGS = [
    {"normalization": "zscore"},
    {"normalization": "minmax", "crop_size": (32, 32)},
    {
        "normalization": "percentile",
        "percentiles": (1.0, 99.0),
        "fifth_channel": "flair_edges",
        "fifth_channel_sigma": 1.5,
    },
]


def output_digest(tmp_path) -> str:
    image, classes = blob_case((40, 36, 12), seed=5)
    write_case(
        tmp_path / "Brats18_V_1", "Brats18_V_1", image, classes
    )  # through NIfTI: the loader counts too
    loaded = load_case(find_case(tmp_path / "Brats18_V_1"))
    digest = hashlib.sha256()
    for settings in SETTINGS:
        prep = preprocess_case(loaded, preprocess_settings(**settings))
        for rule in ("threshold", "tumour", "brain"):
            selected = select_slices(prep.y, prep.brain_pixels, SelectionSettings(rule, 30))
            digest.update(f"{rule}:{selected.tolist()}".encode())
        # rounded as the cache stores it, which also keeps last-bit differences out of the hash
        digest.update(np.ascontiguousarray(prep.x, dtype=X_DTYPE).tobytes())
        digest.update(np.ascontiguousarray(prep.y).tobytes())
        digest.update(
            repr(
                (
                    prep.crop_box,
                    prep.full_shape,
                    prep.brain_pixels.tolist(),
                    prep.cut_brain,
                    prep.cut_tumour,
                )
            ).encode()
        )
    return digest.hexdigest()


def test_output_of_a_fixed_case_matches_its_preprocessing_version(tmp_path):
    digest = output_digest(tmp_path)
    assert OUTPUT_DIGESTS.get(PREPROCESS_VERSION) == digest, (
        f"the preprocessing output is now {digest}; if that is intended, bump PREPROCESS_VERSION "
        f"(now {PREPROCESS_VERSION}) and record the digest under the new version"
    )


def test_the_digest_sees_a_small_change_of_the_output(tmp_path, monkeypatch):
    from brats_seg.data import preprocess

    original = preprocess.normalize

    def shifted(*args, **kwargs):
        return original(*args, **kwargs) * np.float32(1.01)

    monkeypatch.setattr(preprocess, "normalize", shifted)
    assert output_digest(tmp_path) != OUTPUT_DIGESTS[PREPROCESS_VERSION]
