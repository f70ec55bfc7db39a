"""A real browser: JupyterLab 4 and Notebook 7 on 127.0.0.1 in Chromium (Playwright) run the tour.

Checks that the panels render, that moving a slider redraws the heatmap, and that no cell
shows an error; saves screenshots under ``$ATTNLAB_SCREENSHOTS`` (default: a temp folder).
Needs Debian's Chromium at /usr/bin/chromium (``.ci/run`` installs it).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).parent.parent
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: front end -> (server module, extra arguments, URL path of the tour)
FRONT_ENDS = {
    "jupyterlab": ("jupyterlab", ["--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                   "lab/tree/notebooks/01_tour.ipynb"),
    "notebook7": ("notebook", [], "notebooks/notebooks/01_tour.ipynb"),
}


@pytest.fixture(scope="module", params=sorted(FRONT_ENDS))
def lab(request, tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: apt-get install -y chromium (the CI script does)")
    module, extra, tour = FRONT_ENDS[request.param]
    work = tmp_path_factory.mktemp(request.param)
    shutil.copytree(ROOT / "notebooks", work / "notebooks")
    port, token = _free_port(), "attnlab-test-token"
    env = {**os.environ, "ATTNLAB_FAST": "1", "JUPYTER_CONFIG_DIR": str(work / "cfg"),
           "JUPYTER_RUNTIME_DIR": str(work / "rt")}
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}", "--allow-root", *extra],
        env=env, stdout=open(work / "lab.log", "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"{request.param} did not start: " + (work / "lab.log").read_text(errors="replace")[-2000:])
    yield url, token, tour, request.param
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _shots() -> Path:
    out = Path(os.environ.get("ATTNLAB_SCREENSHOTS", "/tmp/attnlab-screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_tour_runs_in_the_browser(lab):
    from playwright.sync_api import sync_playwright

    url, token, tour, front_end = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/{tour}?token={token}")
        page.wait_for_selector(".jp-Notebook", timeout=60_000)
        # a kernel-selection dialog may appear: accept the default kernel
        try:
            page.locator(".jp-Dialog .jp-mod-accept").click(timeout=8_000)
        except Exception:
            pass
        if front_end == "jupyterlab":
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
        else:
            page.wait_for_timeout(5_000)  # Notebook 7 starts the notebook's kernel by itself
        page.click("text=Run", timeout=10_000)
        page.click("text=Run All Cells", timeout=10_000)
        # wait until every code cell has an execution count
        page.wait_for_function(
            """() => { const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
                      return p.length > 0 && p.every(e => /\\[\\d+\\]/.test(e.textContent)); }""",
            timeout=900_000)
        page.wait_for_timeout(2_000)
        page.screenshot(path=str(_shots() / f"{front_end}_tour_after_run.png"), full_page=False)
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] :text('Traceback')")
        error_outputs = page.locator(".jp-OutputArea-child .jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")
        assert error_outputs.count() == 0, error_outputs.first.inner_text()
        assert errors.count() == 0
        check_widgets(page, front_end)
        browser.close()


def check_widgets(page, front_end: str) -> None:
    """Panels rendered, and moving the first panel's layer slider redraws its picture."""
    widgets = page.locator(".jupyter-widgets")
    assert widgets.count() > 0, "no widget rendered"
    panel_errors = page.locator(".attnlab-error:visible")
    assert panel_errors.count() == 0, panel_errors.first.inner_text()
    # back to the top (front ends may only render the cells in view): the explorer comes first
    page.evaluate("""() => document.querySelectorAll('.jp-WindowedPanel-outer, .jp-NotebookPanel-notebook, .jp-Notebook')
                          .forEach(e => { e.scrollTop = 0; })""")
    page.wait_for_timeout(1_000)
    panel = (page.locator(".attnlab-panel").filter(has=page.locator(".widget-slider"))
             .filter(has=page.locator("img")).first)
    panel.scroll_into_view_if_needed()
    image = panel.locator("img").first
    before = image.get_attribute("src")
    track = panel.locator(".widget-slider").first.locator(".noUi-target, .slider-container").first
    box = track.bounding_box()
    page.mouse.click(box["x"] + 0.6 * box["width"], box["y"] + box["height"] / 2)  # a click on the track moves it
    handle = image.element_handle()
    page.wait_for_function("([img, b]) => img.getAttribute('src') !== b", arg=[handle, before], timeout=30_000)
    page.screenshot(path=str(_shots() / f"{front_end}_tour_after_slider.png"))
