"""`brats-seg eda`.

Statistics checked against numpy on the seg files, figures, the report folder and the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brats_seg.config import compose
from brats_seg.data.dataset import prepare_data
from brats_seg.errors import ConfigError
from brats_seg.viz.eda import run_eda

from conftest import run_cli

THRESHOLD = 20
SYNTH = [
    "data.synth.cases=3",
    "data.synth.shape=[48,48,24]",
    "data.synth.seed=2",
    f"data.selection.threshold={THRESHOLD}",
    "data.workers=1",
]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _eda_cfg(tmp_path: Path, *extra: str):
    return compose("eda", [f"paths.output_root={tmp_path / 'outputs'}", *SYNTH, *extra])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare_data(_eda_cfg(tmp_path_factory.mktemp("eda")).data)


def _expected_from_seg_files(root: Path) -> dict:
    """The study's EDA numbers computed directly from the seg files with numpy.

    ET = label 4 -> class 3.
    """

    per_slice = []
    per_case = {}
    for seg_path in sorted(root.glob("*/*_seg.nii.gz")):
        seg = np.asanyarray(nib.load(seg_path).dataobj)
        classes = np.zeros(seg.shape, dtype=np.int64)
        for label, cls in ((1, 1), (2, 2), (4, 3)):
            classes[seg == label] = cls
        counts = np.array(
            [[np.sum(classes[:, :, z] == c) for c in range(4)] for z in range(seg.shape[2])]
        )
        kept = counts[(counts[:, 1:] > THRESHOLD).any(axis=1)]
        per_case[seg_path.parent.name] = kept
        per_slice.append(kept)
    counts = np.concatenate(per_slice)
    return {"counts": counts, "per_case": per_case}


def _is_png(path: Path) -> bool:
    from PIL import Image

    if path.read_bytes()[:8] != PNG_SIGNATURE:
        return False
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.size[0] > 50 and image.size[1] > 50


def test_counts_match_numpy_on_the_seg_files(prepared, tmp_path):
    report = run_eda(prepared, tmp_path / "report", overlays=3, seed=1)
    expected = _expected_from_seg_files(Path(prepared.root))
    counts = expected["counts"]
    assert report["selected_slices"] == len(counts) > 0
    assert report["pixels_per_class"] == counts.sum(axis=0).tolist()
    assert report["slices_lacking_class"] == (counts == 0).sum(axis=0).tolist()
    assert sum(report["pixels_per_class"]) == len(counts) * 48 * 48
    for entry in report["cases"]:
        mine = expected["per_case"][entry["case_id"]]
        assert entry["selected_slices"] == len(mine)
        assert entry["pixels_per_class"] == mine.sum(axis=0).tolist()
    for c, name in ((1, "NCR/NET"), (2, "edema"), (3, "ET")):
        present = counts[counts[:, c] > 0, c]
        area = report["area_per_slice"][name]
        assert area["slices_present"] == len(present)
        assert area["median"] == pytest.approx(float(np.median(present)))
        assert area["max"] == int(present.max())
        assert sum(area["histogram"]["counts"]) == len(present)
        edges = np.asarray(area["histogram"]["edges"])
        assert area["histogram"]["counts"] == np.histogram(present, bins=edges)[0].tolist()


def test_edema_contrast_is_the_edema_medians_rank_in_the_raw_healthy_brain(prepared, tmp_path):
    """Each case's edema contrast, recomputed from the NIfTI files: a rank, so the z-scoring of the
    cache does not change it."""
    report = run_eda(prepared, tmp_path / "report", overlays=0)
    root = Path(prepared.root)
    assert set(report["edema_contrast"]) == {e["case_id"] for e in report["cases"]}
    for case_id, contrast in report["edema_contrast"].items():
        seg = np.asanyarray(nib.load(next(root.glob(f"{case_id}/*_seg.nii.gz"))).dataobj)
        assert contrast is not None and set(contrast) == {"t1", "t1ce", "t2", "flair"}
        for name, percentile in contrast.items():
            image = np.asanyarray(
                nib.load(next(root.glob(f"{case_id}/*_{name}.nii.gz"))).dataobj
            ).astype(np.float64)
            healthy = image[(seg == 0) & (image != 0)]
            median = np.median(image[seg == 2])
            assert percentile == pytest.approx(100.0 * np.mean(healthy < median), abs=0.15)


def test_report_folder_holds_json_and_valid_figures(prepared, tmp_path):
    out = tmp_path / "report"
    report = run_eda(prepared, out, overlays=2, gif=True, seed=3)
    stored = json.loads((out / "eda.json").read_text())
    assert stored["pixels_per_class"] == report["pixels_per_class"]
    assert set(stored["figures"].values()) == {
        "classes.png",
        "area_histograms.png",
        "overlays.png",
        "montage.png",
        "volume.gif",
    }
    for name in ("classes.png", "area_histograms.png", "overlays.png", "montage.png"):
        assert _is_png(out / name), name
    from PIL import Image

    first_case = prepared.case_ids[0]
    assert stored["montage"]["case_id"] == first_case
    flair = np.asanyarray(
        nib.load(next(Path(prepared.root).glob(f"{first_case}/*_flair.nii.gz"))).dataobj
    )
    slices_with_brain = int(np.count_nonzero(flair.any(axis=(0, 1))))
    with Image.open(out / "volume.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == slices_with_brain
    # two overlays: the seeded draw over every selected slice, in case order
    from brats_seg.viz.eda import overlay_picks

    table = [(c, z) for c in prepared.case_ids for z in prepared.case_meta(c)["selected"]]
    assert stored["overlay_slices"] == [
        list(table[i]) for i in overlay_picks(len(table), 2, seed=3)
    ]


def test_overlay_draw_is_seeded_and_distinct():
    from brats_seg.viz.eda import overlay_picks

    a, b, c = (
        overlay_picks(40, 6, seed=7),
        overlay_picks(40, 6, seed=7),
        overlay_picks(40, 6, seed=8),
    )
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()
    assert (
        len(set(a.tolist())) == 6
        and a.tolist() == sorted(a.tolist())
        and 0 <= a.min()
        and a.max() < 40
    )
    assert sorted(overlay_picks(4, 6, seed=1).tolist()) == [
        0,
        1,
        2,
        3,
    ]  # never more overlays than slices
    assert overlay_picks(0, 6, seed=1).size == 0 and overlay_picks(10, 0, seed=1).size == 0


def test_rerun_replaces_the_report_and_leaves_nothing_behind(prepared, tmp_path):
    out = tmp_path / "report"
    run_eda(prepared, out, overlays=2, gif=True)
    run_eda(prepared, out, overlays=0, montage_case=prepared.case_ids[1])
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        ".brats-seg-output.json",  # the marker that makes it eda's own output
        "area_histograms.png",
        "classes.png",
        "eda.json",
        "montage.png",
    ]
    assert json.loads((out / "eda.json").read_text())["montage"]["case_id"] == prepared.case_ids[1]
    assert [p.name for p in tmp_path.iterdir()] == [
        "report"
    ]  # no temporary or old folder left over


def test_refuses_to_replace_a_folder_that_is_not_a_report(prepared, tmp_path):
    precious = tmp_path / "mine" / "notes.txt"
    precious.parent.mkdir()
    precious.write_text("keep me")
    with pytest.raises(ConfigError, match="out="):
        run_eda(prepared, precious.parent)
    assert precious.read_text() == "keep me"
    with pytest.raises(ConfigError, match="montage_case=nope"):
        run_eda(prepared, tmp_path / "other", montage_case="nope")
    with pytest.raises(ConfigError, match="overlays=-1"):
        run_eda(prepared, tmp_path / "other", overlays=-1)


def test_montage_of_a_cropped_data_set(tmp_path):
    cfg = _eda_cfg(
        tmp_path, "data.preprocess.crop.enabled=true", "data.preprocess.crop.size=[32,32]"
    )
    prepared = prepare_data(cfg.data)
    from brats_seg.viz.eda import volume_frames

    frames, zs, selected = volume_frames(prepared, prepared.case_ids[0])
    assert frames[0].shape == (32, 32, 3)
    assert selected == set(prepared.case_meta(prepared.case_ids[0])["selected"])
    report = run_eda(prepared, tmp_path / "report", overlays=1)
    assert _is_png(tmp_path / "report" / "montage.png")
    assert sum(report["pixels_per_class"]) == report["selected_slices"] * 32 * 32


def test_eda_command_prints_a_summary_and_writes_only_the_report(tmp_path):
    args = ["eda", "out=report", "paths.output_root=work", "overlays=1", *SYNTH]
    result = run_cli(*args, cwd=tmp_path, timeout=180)
    assert result.returncode == 0, result.stderr
    assert (
        "selected" in result.stdout
        and "edema" in result.stdout
        and "slices lacking" in result.stdout
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "report",
        "work",
    ]  # the report and the cache; no .hydra
    stored = json.loads((tmp_path / "report" / "eda.json").read_text())
    assert f"{stored['pixels_per_class'][2]:,}" in result.stdout

    bad = run_cli(
        "eda", "out=report", "paths.output_root=work", "montage_case=nope", *SYNTH, cwd=tmp_path
    )
    assert bad.returncode != 0
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "montage_case=nope" in lines[0], bad.stderr


def test_overlay_rgb_blends_class_colours_over_a_windowed_image(tmp_path):
    from brats_seg.viz.overlay import label_colours, overlay_rgb, save_montage, to_display

    image = np.full((10, 10), 10.0)
    image[5:] = 50.0  # the 1st and 99th percentiles of the brain are 10 and 50: grey 0 and 1
    image[0, 0] = 0  # background
    classes = np.zeros((10, 10), dtype=np.uint8)
    classes[9, 9] = 2  # bright pixel, edema
    classes[0, 1] = 3  # dark pixel, ET
    rgb = overlay_rgb(image, classes, alpha=0.5)
    assert rgb.shape == (10, 10, 3) and rgb.min() >= 0 and rgb.max() <= 1
    np.testing.assert_allclose(rgb[0, 0], [0, 0, 0])
    np.testing.assert_allclose(rgb[9, 8], [1, 1, 1])
    np.testing.assert_allclose(rgb[0, 2], [0, 0, 0])
    np.testing.assert_allclose(rgb[9, 9], 0.5 * 1.0 + 0.5 * label_colours()[2])
    np.testing.assert_allclose(rgb[0, 1], 0.5 * 0.0 + 0.5 * label_colours()[3])
    assert to_display(rgb)[1, 0].tolist() == rgb[0, 1].tolist()  # rows become columns
    path = save_montage(tmp_path / "m.png", [to_display(rgb), to_display(image / 100)], ["a", "b"])
    assert _is_png(path) and [p.name for p in tmp_path.iterdir()] == ["m.png"]
