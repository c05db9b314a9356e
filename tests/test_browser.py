"""The app in a real browser: Debian's Chromium driven by Playwright (never downloaded).

Starts `streamlit run app.py` on a free local port, opens every page, fails on any Streamlit
exception block, draws a character on the Draw page with the mouse and checks that a
prediction appears, and saves a screenshot of every page to screenshots/ (git-ignored).
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

from app_fixtures import ROOT, make_checkpoint, make_finished_run
from conftest import missing

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = ROOT / "screenshots"
PAGES = [("", "home"), ("dataset", "dataset"), ("augment", "augment"), ("train", "train"), ("runs", "runs"),
         ("errors", "errors"), ("draw", "draw")]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        missing(f"{CHROMIUM} not installed (.ci/run installs it with apt-get)")
    home = tmp_path_factory.mktemp("app")
    ckpt_dir = home / "checkpoints"
    shipped = ROOT / "checkpoints" / "default.pt"
    if shipped.exists():
        ckpt_dir.mkdir()
        shutil.copy(shipped, ckpt_dir / "default.pt")
    else:  # before the default model is trained: an untrained one still exercises every page
        make_checkpoint(ckpt_dir / "default.pt")
    make_finished_run(home / "runs", ckpt_dir / "default.pt")
    port = _free_port()
    env = {**os.environ, "CHARLAB_RUNS": str(home / "runs"), "CHARLAB_CHECKPOINTS": str(ckpt_dir),
           "CHARLAB_USER_DATA": str(home / "user_data")}  # charlab's caches are keyed by content: shared
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                pytest.fail(f"streamlit did not start:\n{out[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        pg = browser.new_page(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
        yield pg
        browser.close()


def _settle(pg, timeout_s: float = 180) -> None:
    """Wait until the script has run to the end (first loads of data and models can take a while)."""
    pg.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=timeout_s * 1000)
    pg.wait_for_timeout(1200)  # charts draw after the script is done
    pg.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=timeout_s * 1000)


def _shoot(pg, name: str) -> None:
    """Screenshot the whole page: Streamlit scrolls inside its main container, not the document,
    so grow the viewport to the content's height first."""
    SHOTS.mkdir(exist_ok=True)
    h = pg.evaluate("() => document.querySelector('[data-testid=stMain]').scrollHeight")
    pg.set_viewport_size({"width": 1440, "height": max(900, min(int(h) + 40, 6000))})
    pg.wait_for_timeout(800)  # charts re-lay out to the new size
    pg.screenshot(path=str(SHOTS / f"{name}.png"))
    pg.set_viewport_size({"width": 1440, "height": 900})


def _no_exception(pg, name: str) -> None:
    errs = pg.locator("[data-testid=stException]")
    if errs.count():
        pytest.fail(f"page {name!r} shows an exception:\n{errs.first.inner_text()[:2000]}")


def test_a_page_url_as_the_first_visit_of_a_fresh_server(app_url, page):
    """Must run first in this module (a fresh server): with a pages/ folder, Streamlit's legacy
    mode would run pages/runs.py alone, without app.py's sidebar and shared state."""
    page.goto(f"{app_url}/runs")
    _settle(page)
    _no_exception(page, "runs (first visit)")
    assert page.locator("h1", has_text="Runs").count() == 1
    assert page.locator("[data-testid=stSidebar]").get_by_text("Active model").count() >= 1


def test_every_page_renders(app_url, page):
    for path, name in PAGES:
        page.goto(f"{app_url}/{path}")
        _settle(page)
        _no_exception(page, name)
        assert page.locator("h1").count() >= 1, f"page {name!r} has no title"
        if name != "draw":  # the Draw page is shot after drawing, below
            _shoot(page, name)


def test_confusion_cell_click_shows_its_images(app_url, page):
    """Plotly selection events on the scatter-drawn matrix reach the page (heatmaps would not)."""
    page.goto(f"{app_url}/errors")
    _settle(page)
    heading = page.locator("h3", has_text="→ predicted").first
    before = heading.inner_text()
    # an error cell (the second trace; the first holds the diagonal) other than the one shown
    xy = page.evaluate("() => { const d = document.querySelector('.js-plotly-plot').data[1]; return [d.x, d.y]; }")
    pick = [i for i, (x, y) in enumerate(zip(*xy)) if f"True '{y}' → predicted '{x}'" != before]
    assert pick, "the confusion matrix shows no other error cell"
    cell = page.locator(".js-plotly-plot .scatterlayer .trace").nth(1).locator("path.point").nth(pick[-1])
    cell.scroll_into_view_if_needed()
    # Plotly takes clicks on its drag layer and finds the point under the mouse: click by position
    box = cell.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("(b) => { const h = [...document.querySelectorAll('h3')].find("
                           "e => e.innerText.includes('→ predicted')); return h && h.innerText !== b; }",
                           arg=before, timeout=180_000)  # a cold cache on a busy machine is slow
    _settle(page)
    _no_exception(page, "errors")


def test_draw_predicts(app_url, page):
    page.goto(f"{app_url}/draw")
    _settle(page)
    canvas = page.locator("[data-testid=stBidiComponentIsolated] canvas.upper-canvas").first
    canvas.wait_for(timeout=30_000)
    box = canvas.bounding_box()
    assert box and box["width"] > 100
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    # a "7": a top bar, then a diagonal down to the bottom left
    page.mouse.move(x0 + 0.25 * w, y0 + 0.22 * h)
    page.mouse.down()
    for t in range(1, 11):
        page.mouse.move(x0 + (0.25 + 0.5 * t / 10) * w, y0 + 0.22 * h)
    for t in range(1, 15):
        page.mouse.move(x0 + (0.75 - 0.3 * t / 14) * w, y0 + (0.22 + 0.58 * t / 14) * h)
    page.mouse.up()
    page.get_by_text("Looks like").first.wait_for(timeout=60_000)
    _settle(page)
    _no_exception(page, "draw")
    assert page.get_by_text("model input").count() >= 1
    _shoot(page, "draw")
