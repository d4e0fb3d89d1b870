"""brats-seg view (issue 28, item 4): the folder it writes, and the page driven in headless Chromium
(the system's /usr/bin/chromium, WebGL2 through SwiftShader) by playwright."""

from __future__ import annotations

import base64
import gzip
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import brats_seg.viz
from brats_seg.cli import main
from brats_seg.data.labels import to_convention
from brats_seg.data.nifti import DEFAULT_AFFINE, read_nifti, write_nifti

from conftest import blob_case, run_cli, write_case

CHROMIUM = Path("/usr/bin/chromium")
# WebGL2 without a GPU: ANGLE on SwiftShader, which Chromium no longer falls back to on its own.
CHROMIUM_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
SHAPE = (32, 32, 16)
CASE_IDS = ["Brats18_A_1", "BraTS-GLI-00002-000"]  # both namings, so both label conventions
SHIFT = 3  # voxels the prediction is moved from the truth along x


@pytest.fixture(scope="module")
def viewed(tmp_path_factory) -> dict:
    """Two cases (one per naming), a prediction of each (its truth moved SHIFT voxels), and the
    view of them that the CLI wrote."""
    base = tmp_path_factory.mktemp("view")
    truths = {}
    for seed, case_id in enumerate(CASE_IDS):
        convention = "brats2023" if case_id.startswith("BraTS-") else "brats2021"
        image, classes = blob_case(SHAPE, seed=seed)
        case = write_case(base / "cases" / case_id, case_id, image, classes, convention=convention)
        raw, img = read_nifti(case.seg)
        (base / "preds").mkdir(exist_ok=True)
        write_nifti(
            base / "preds" / case.seg.name, np.roll(raw, SHIFT, axis=0), img.affine, img.header
        )
        truths[case_id] = classes
    out = base / "the-view"
    result = run_cli(
        "view", f"predictions={base / 'preds'}", f"input={base / 'cases'}", f"out={out}", cwd=base
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {"base": base, "out": out, "truths": truths, "stdout": result.stdout}


def _page_config(out: Path) -> dict:
    html = (out / "index.html").read_text()
    data = re.search(r'<script id="view-config" type="application/json">(.*?)</script>', html, re.S)
    return json.loads(data.group(1))


def _volumes(out: Path, entry: dict) -> dict:
    text = (out / entry["script"]).read_text()
    call = re.fullmatch(r"bratsView\.receive\((\".*?\"), (.*)\);\n", text, re.S)
    assert json.loads(call.group(1)) == entry["id"]
    return json.loads(call.group(2))


def _decoded(b64: str) -> np.ndarray:
    raw = gzip.decompress(base64.b64decode(b64))
    return np.asarray(nib.Nifti1Image.from_bytes(raw).dataobj)


def test_the_folder_holds_the_page_niivue_and_every_case(viewed):
    out = viewed["out"]
    assert f"wrote {(out / 'index.html').resolve()} (2 case(s)" in viewed["stdout"]
    shipped = Path(brats_seg.viz.__file__).parent / "static"
    for name in ("niivue.umd.js", "LICENSE", "README.md"):
        assert (out / "niivue" / name).read_bytes() == (shipped / "niivue" / name).read_bytes()
    assert "0.69.0" in (out / "niivue" / "README.md").read_text()
    assert (out / "viewer.js").read_bytes() == (shipped / "viewer" / "viewer.js").read_bytes()
    config = _page_config(out)
    assert [c["id"] for c in config["cases"]] == sorted(CASE_IDS)
    assert [m["key"] for m in config["modalities"]] == ["t1", "t1ce", "t2", "flair"]
    assert [c["value"] for c in config["classes"]] == [1, 2, 3]
    marker = json.loads((out / ".brats-seg-output.json").read_text())
    assert marker["whole"] == "view"


def test_truth_and_prediction_are_stored_as_classes_whatever_the_label_convention(viewed):
    """The 2023-named case's ET is label 3 and the 2021-named case's is label 4; the page gets
    classes 0..3 for both, on the images' grid, and each image file as it is."""
    out = viewed["out"]
    for entry in _page_config(out)["cases"]:
        truth = viewed["truths"][entry["id"]]
        volumes = _volumes(out, entry)
        assert np.array_equal(_decoded(volumes["truth"]), truth)
        assert np.array_equal(_decoded(volumes["prediction"]), np.roll(truth, SHIFT, axis=0))
        assert _decoded(volumes["t1"]).shape == SHAPE
        case_dir = viewed["base"] / "cases" / entry["id"]
        flair = next(case_dir.glob("*[_-]flair.nii.gz"), None) or next(case_dir.glob("*-t2f*"))
        assert base64.b64decode(volumes["flair"]) == flair.read_bytes()
        # the page opens where the truth has the most tumour, in each plane
        for axis in range(3):
            others = tuple(a for a in range(3) if a != axis)
            assert entry["focus"][axis] == int(np.argmax((truth > 0).sum(axis=others)))
    # the two cases' files really differ in their ET label
    et_labels = {
        case_id: int(read_nifti(next((viewed["base"] / "cases" / case_id).glob("*seg*")))[0].max())
        for case_id in CASE_IDS
    }
    assert et_labels == {"Brats18_A_1": 4, "BraTS-GLI-00002-000": 3}


def test_a_second_view_replaces_its_own_and_refuses_a_foreign_folder(viewed, tmp_path):
    again = tmp_path / "again"
    shutil.copytree(viewed["out"], again)
    args = [f"predictions={viewed['base'] / 'preds'}", f"input={viewed['base'] / 'cases'}"]
    replaced = run_cli("view", *args, f"out={again}", "cases=[Brats18_A_1]")
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    assert [c["id"] for c in _page_config(again)["cases"]] == ["Brats18_A_1"]
    assert len(list((again / "cases").iterdir())) == 1
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    refused = run_cli("view", *args, f"out={foreign}")
    assert refused.returncode == 1 and "notes.txt" in refused.stderr
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_open_true_hands_the_page_to_the_web_browser(viewed, tmp_path):
    """$BROWSER is the browser Python's webbrowser runs: here a script that records its URL."""
    record = tmp_path / "opened.txt"
    fake = tmp_path / "browser.py"
    fake.write_text(f"import sys; open({str(record)!r}, 'w').write(sys.argv[1])\n")
    out = tmp_path / "opened-view"
    args = [f"predictions={viewed['base'] / 'preds'}", f"input={viewed['base'] / 'cases'}"]
    result = run_cli(
        "view", *args, f"out={out}", "open=true", env={"BROWSER": f"{sys.executable} {fake} %s"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert record.read_text() == (out / "index.html").resolve().as_uri()


@pytest.mark.parametrize(
    "args, message",
    [
        (["input=x"], "give run=RUN_DIR (its test patients) or predictions=DIR input=PATH"),
        (["predictions=p"], "predictions=p needs input=PATH"),
        (["run=r", "predictions=p", "input=i"], "run=r and predictions=p: give one of them"),
        (["predictions=p", "input=i", "opacity=1.5"], "opacity=1.5: must be >= 0 and <= 1"),
    ],
)
def test_bad_options_are_one_line_before_any_folder(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["view", *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"brats-seg view: error: {message}"), err
    assert list(tmp_path.iterdir()) == []


def _exit_code(argv: list[str]) -> int:
    """brats_seg.cli.main in this process: an error found inside the Hydra app exits."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def test_unknown_case_ids_and_unmatched_predictions_are_refused(
    viewed, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    preds, cases = viewed["base"] / "preds", viewed["base"] / "cases"
    assert _exit_code(["view", f"predictions={preds}", f"input={cases}", "cases=[Nope_1]"]) == 1
    assert "cases=[Nope_1]: no case Nope_1 among the 2 to view" in capsys.readouterr().err
    elsewhere = tmp_path / "elsewhere"
    write_case(elsewhere / "Brats18_Z_1", "Brats18_Z_1", *blob_case(SHAPE, seed=5))
    assert _exit_code(["view", f"predictions={preds}", f"input={elsewhere}"]) == 1
    assert "no case id is both predicted in" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere"]


@pytest.mark.slow  # loads TensorFlow and predicts: 30-40 s on 2 shared cores
def test_a_run_shows_its_test_patients_with_the_predictions_it_writes(tiny_trained_run, tmp_path):
    out = tmp_path / "run-view"
    result = run_cli("view", f"run={tiny_trained_run}", f"out={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # the progress names the files where they end up, not in the staging folder renamed after
    assert f"wrote {out / 'predictions'}" in result.stderr + result.stdout
    assert ".tmp" not in result.stderr + result.stdout
    test = json.loads((tiny_trained_run / "split.json").read_text())["test"]
    config = _page_config(out)
    assert [c["id"] for c in config["cases"]] == sorted(test)
    inference = json.loads((out / "predictions" / "inference.json").read_text())
    assert inference["runs"] == [str(tiny_trained_run.resolve())]
    for entry in config["cases"]:
        written = out / "predictions" / inference["predictions"][entry["id"]]
        raw, _ = read_nifti(written)
        shown = _decoded(_volumes(out, entry)["prediction"])
        assert np.array_equal(shown, to_classes_2021(raw))
        assert entry["prediction_file"] == str(written)


def test_a_run_whose_test_patients_are_not_under_input_is_refused(
    tiny_trained_run, viewed, tmp_path
):
    out = tmp_path / "nothing"
    result = run_cli(
        "view", f"run={tiny_trained_run}", f"input={viewed['base'] / 'cases'}", f"out={out}"
    )
    test = json.loads((tiny_trained_run / "split.json").read_text())["test"]
    assert result.returncode == 1
    assert f"input={viewed['base'] / 'cases'}: no case {test[0]}" in result.stderr
    assert "of the run's test patients; give input=ROOT" in result.stderr
    assert not out.exists()


def to_classes_2021(labels: np.ndarray) -> np.ndarray:
    from brats_seg.data.labels import labels_to_classes

    return labels_to_classes(labels, "brats2021", "prediction")


# ------------------------------------------------------------------------- in the browser


def _skip_without_chromium():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: the viewer's browser tests need the system's Chromium")


@pytest.fixture(scope="module")
def browser():
    _skip_without_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Page:
    """The viewer open in a browser tab, recording console errors, page errors and requests."""

    def __init__(self, browser, page_path: Path):
        self.page = browser.new_page(viewport={"width": 640, "height": 520})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(page_path.resolve().as_uri())
        self.wait_ready()

    def wait_ready(self) -> None:
        self.page.wait_for_function("document.body.dataset.state !== 'loading'", timeout=60_000)
        assert self.page.evaluate("document.body.dataset.state") == "ready", self.errors

    def canvas(self) -> np.ndarray:
        from PIL import Image

        self.page.wait_for_timeout(150)  # NiiVue draws on the next frame
        shot = self.page.locator("#gl").screenshot()
        return np.asarray(Image.open(io.BytesIO(shot)).convert("RGB")).astype(int)

    def close(self) -> None:
        self.page.close()


def lit(pixels: np.ndarray) -> int:
    """Pixels that are not the black background."""
    return int((pixels.max(axis=-1) > 30).sum())


def tumour_coloured(pixels: np.ndarray) -> int:
    """Pixels tinted by a label colour (red, green or yellow: blue is their smallest channel), not
    grey and not the blue crosshair."""
    spread = pixels.max(axis=-1) - pixels.min(axis=-1)
    return int(
        ((spread > 40) & (pixels[..., 2] < np.maximum(pixels[..., 0], pixels[..., 1]))).sum()
    )


def changed(a: np.ndarray, b: np.ndarray) -> int:
    return int((np.abs(a - b).sum(axis=-1) > 30).sum())


@pytest.fixture
def page(browser, viewed):
    opened = Page(browser, viewed["out"] / "index.html")
    yield opened
    assert opened.errors == [], opened.errors
    assert all(url.startswith("file://") for url in opened.requests), opened.requests
    opened.close()


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_the_page_loads_with_no_error_and_each_modality_renders(page):
    assert page.page.evaluate("document.getElementById('gl').getContext('webgl2') !== null")
    shots = {}
    for key in ("t1", "t1ce", "t2", "flair"):
        page.page.check(f"#modality-{key}")
        page.wait_ready()  # each image is decoded when it is first shown
        shots[key] = page.canvas()
        assert lit(shots[key]) > 0.05 * shots[key].shape[0] * shots[key].shape[1], key
    for a, b in (("t1", "t1ce"), ("t1ce", "t2"), ("t2", "flair")):
        assert changed(shots[a], shots[b]) > 100, (a, b)


def test_the_page_opens_where_the_truth_has_the_most_tumour(page, viewed):
    """At the focus voxel in scanner coordinates: the synthetic cases' affine flips x and y (as
    BraTS files do), which NiiVue turns to RAS, so voxel indices of the file would miss it."""
    entry = _page_config(viewed["out"])["cases"][0]
    affine = nib.load(sorted((viewed["base"] / "cases" / entry["id"]).glob("*.nii.gz"))[0]).affine
    assert np.diag(affine)[:2].tolist() == [-1.0, -1.0]
    expected = (affine @ [*entry["focus"], 1.0])[:3]
    shown = page.page.evaluate(
        "Array.from(bratsView.nv.frac2mm(bratsView.nv.scene.crosshairPos)).slice(0, 3)"
    )
    assert np.allclose(shown, expected, atol=0.51), (shown, expected)
    assert viewed["truths"][entry["id"]][tuple(entry["focus"])] > 0


def test_toggling_each_overlay_changes_the_canvas(page):
    both = page.canvas()
    assert tumour_coloured(both) > 200
    page.page.uncheck("#show-prediction")
    truth = page.canvas()
    page.page.uncheck("#show-truth")
    neither = page.canvas()
    page.page.check("#show-prediction")
    prediction = page.canvas()
    assert tumour_coloured(neither) < 0.05 * tumour_coloured(both)
    assert changed(truth, neither) > 200 and changed(prediction, neither) > 200
    assert changed(truth, prediction) > 50  # the prediction sits SHIFT voxels off the truth
    assert changed(both, truth) > 50


def test_the_label_toggles_the_opacity_and_the_slice_slider_change_the_canvas(page):
    before = page.canvas()
    page.page.uncheck("#label-2")  # edema, the outer shell of the synthetic tumour
    no_edema = page.canvas()
    assert changed(before, no_edema) > 200
    assert tumour_coloured(no_edema) < tumour_coloured(before)
    page.page.check("#label-2")
    assert changed(before, page.canvas()) < 20
    page.page.locator("#opacity").fill("1")
    assert changed(before, page.canvas()) > 200
    slider = page.page.locator("#slice")
    slider.fill("0")
    assert changed(before, page.canvas()) > 200
    assert page.page.inner_text("#slice-value").startswith("0 /")


def test_choosing_another_patient_and_another_plane_shows_them(page):
    first = page.canvas()
    page.page.select_option("#case", "1")
    page.wait_ready()
    assert sorted(CASE_IDS)[1] in page.page.inner_text("#status")
    second = page.canvas()
    assert changed(first, second) > 200
    page.page.select_option("#plane", "sagittal")
    sagittal = page.canvas()
    assert changed(second, sagittal) > 200 and lit(sagittal) > 0
    assert page.page.inner_text("#slice-axis") == "sagittal"


def test_viewing_predictions_does_not_import_tensorflow(viewed, tmp_path):
    code = (
        "import sys; from brats_seg.cli import main; "
        f"code = main(['view', 'predictions={viewed['base'] / 'preds'}', "
        f"'input={viewed['base'] / 'cases'}', 'out={tmp_path / 'v'}']); "
        "print(code, 'tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip().splitlines()[-1] == "0 False", result.stderr[-2000:]
    assert (tmp_path / "v" / "index.html").is_file()


def test_a_case_without_a_seg_shows_its_prediction_alone(browser, tmp_path):
    image, classes = blob_case(SHAPE, seed=3)
    case = write_case(tmp_path / "cases" / "Brats18_N_1", "Brats18_N_1", image)  # no seg
    (tmp_path / "preds").mkdir()
    labels = to_convention(classes, "brats2021")
    write_nifti(tmp_path / "preds" / "Brats18_N_1_seg.nii.gz", labels, DEFAULT_AFFINE)
    assert case.seg is None
    out = tmp_path / "view"
    result = run_cli(
        "view", f"predictions={tmp_path / 'preds'}", f"input={tmp_path / 'cases'}", f"out={out}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    opened = Page(browser, out / "index.html")
    try:
        assert "no truth" in opened.page.inner_text("#status")
        assert opened.page.is_disabled("#show-truth") and not opened.page.is_disabled(
            "#show-prediction"
        )
        with_prediction = opened.canvas()
        assert tumour_coloured(with_prediction) > 200
        opened.page.uncheck("#show-prediction")
        assert changed(with_prediction, opened.canvas()) > 200
        assert opened.errors == []
    finally:
        opened.close()
