"""A real browser: JupyterLab on 127.0.0.1 in Chromium (Playwright) runs the tour notebook.

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


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: apt-get install -y chromium (the CI script does)")
    work = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", work / "notebooks")
    port, token = _free_port(), "attnlab-test-token"
    env = {**os.environ, "ATTNLAB_FAST": "1", "JUPYTER_CONFIG_DIR": str(work / "cfg"),
           "JUPYTER_RUNTIME_DIR": str(work / "rt")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
         "--allow-root", "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
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
        pytest.fail("JupyterLab did not start: " + (work / "lab.log").read_text(errors="replace")[-2000:])
    yield url, token
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _shots() -> Path:
    out = Path(os.environ.get("ATTNLAB_SCREENSHOTS", "/tmp/attnlab-screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_tour_runs_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright

    url, token = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/lab/tree/notebooks/01_tour.ipynb?token={token}")
        page.wait_for_selector(".jp-Notebook", timeout=60_000)
        # a kernel-selection dialog may appear: accept the default kernel
        try:
            page.locator(".jp-Dialog .jp-mod-accept").click(timeout=8_000)
        except Exception:
            pass
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
        page.click("text=Run", timeout=10_000)
        page.click("text=Run All Cells", timeout=10_000)
        # wait until every code cell has an execution count
        page.wait_for_function(
            """() => { const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
                      return p.length > 0 && p.every(e => /\\[\\d+\\]/.test(e.textContent)); }""",
            timeout=900_000)
        page.wait_for_timeout(2_000)
        page.screenshot(path=str(_shots() / "tour_after_run.png"), full_page=False)
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] :text('Traceback')")
        error_outputs = page.locator(".jp-OutputArea-child .jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")
        assert error_outputs.count() == 0, error_outputs.first.inner_text()
        assert errors.count() == 0
        check_widgets(page)
        browser.close()


def check_widgets(page) -> None:
    """Panels rendered, and moving the first panel's layer slider redraws its picture."""
    widgets = page.locator(".jupyter-widgets")
    assert widgets.count() > 0, "no widget rendered"
    panel_errors = page.locator(".attnlab-error:visible")
    assert panel_errors.count() == 0, panel_errors.first.inner_text()
    slider = page.locator(".widget-slider").first
    image = page.locator(".attnlab-panel img").first
    before = image.get_attribute("src")
    slider.locator(".noUi-handle, .slider-handle, .ui-slider-handle").first.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function("(b) => { const i = document.querySelector('.attnlab-panel img');"
                           " return i && i.getAttribute('src') !== b; }", arg=before, timeout=30_000)
    page.screenshot(path=str(_shots() / "tour_after_slider.png"))
