"""brats-seg report: one self-contained HTML page of a real (tiny) sweep, opened in headless
Chromium, which must load every image."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from conftest import SMALL_UNET, run_cli

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Appended to a copy of the page in the test only: after load, count the images that decoded.
_PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var d = document.createElement("div");
  d.id = "probe";
  d.textContent = "loaded " + ok + " of " + imgs.length;
  document.body.appendChild(d);
});
</script>"""


def chromium() -> str:
    """The chromium binary, installed from Debian's packages if missing; skip when that cannot be
    done."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and this user cannot apt-get install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(
            ["apt-get", "install", "-y", "-q", "chromium"],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
            done = subprocess.run(
                ["apt-get", "install", "-y", "-q", "chromium"],
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
    except subprocess.TimeoutExpired:
        pytest.skip("installing chromium with apt-get timed out")
    if done.returncode != 0 or not shutil.which("chromium"):
        pytest.skip(
            f"chromium could not be installed: {(done.stderr or done.stdout).strip()[-300:]}"
        )
    return shutil.which("chromium")  # type: ignore[return-value]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "outputs"
    out.mkdir()
    result = run_cli(
        "train",
        "-m",
        "debug=tiny",
        *SMALL_UNET,
        "trainer.epochs=2",
        "seed=1,2",
        "model.dropout_rate=0.1,0.3",
        f"paths.output_root={out}",
        cwd=out.parent,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    sweep = out / "sweeps" / "tiny"
    made = run_cli(
        "report", str(sweep), f"out={out / 'report'}", "bootstrap=500", cwd=out.parent, timeout=900
    )
    assert made.returncode == 0, made.stderr[-3000:]
    return out / "report" / "report.html"


@pytest.mark.slow
def test_report_is_one_self_contained_page(report):
    page = report.read_text()
    for heading in (
        "Results",
        "Dice against cost",
        "Experiments across seeds and folds",
        "The study's four metrics",
        "Region Dice",
        "Per-patient Dice",
        "Learning curves",
        "One test slice, every experiment",
    ):
        assert f"<h2>{heading}" in page, heading
    assert page.count("<img ") == 6
    assert page.count('src="data:image/png;base64,') == 6
    # nothing to fetch: no URL in a src/href, no script, no stylesheet link
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)
    assert "<script" not in page and "<link" not in page
    assert "2 of 2 completed" in page  # two experiments of two seeds each


@pytest.mark.slow
def test_every_image_loads_in_headless_chromium(report, tmp_path):
    binary = chromium()
    probe_page = tmp_path / "probe.html"
    probe_page.write_text(report.read_text().replace("</body>", _PROBE + "</body>"))
    profile = tmp_path / "profile"
    dom = subprocess.run(
        [
            binary,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            probe_page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<div id="probe">loaded (\d+) of (\d+)</div>', dom.stdout)
    assert found, dom.stdout[-2000:]
    assert found.group(1) == found.group(2) == "6"
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            binary,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--window-size=1280,3000",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            report.as_uri(),
        ],
        capture_output=True,
        timeout=300,
    )
    assert shot.exists() and shot.stat().st_size > 20_000
    if os.environ.get("BRATS_SEG_REPORT_SCREENSHOT"):  # how docs/report.png was made
        shutil.copy(shot, os.environ["BRATS_SEG_REPORT_SCREENSHOT"])
