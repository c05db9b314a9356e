"""The app in a real browser: Debian's Chromium driven by Playwright (never downloaded).

Starts `streamlit run app.py` on a free local port, opens every page, fails on any Streamlit
exception block, draws a character on the Draw page with the mouse and checks that a
prediction appears, and saves a screenshot of every page to screenshots/ (git-ignored).
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from app_fixtures import ROOT, make_checkpoint, make_finished_run
from charlab.bench import _browser
from charlab.bench._browser import CHROMIUM, CHROMIUM_ARGS
from conftest import missing

SHOTS = ROOT / "screenshots"
PAGES = [("", "home"), ("dataset", "dataset"), ("augment", "augment"), ("train", "train"), ("runs", "runs"),
         ("errors", "errors"), ("draw", "draw")]
LOCAL_HOSTS = ("127.0.0.1", "localhost")
EXTERNAL: list[str] = []  # requests the app made to any other host (all of them fail the test run)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


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
    port = _browser.free_port()
    env = {"CHARLAB_RUNS": str(home / "runs"), "CHARLAB_CHECKPOINTS": str(ckpt_dir),
           "CHARLAB_USER_DATA": str(home / "user_data")}  # charlab's caches are keyed by content: shared
    proc = _browser.start_server(port, env, keep_output=True)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            _browser.wait_healthy(url, proc, time.perf_counter(), 60)
        except Exception:
            proc.terminate()
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            pytest.fail(f"streamlit did not start:\n{out[-3000:]}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except Exception:
            proc.kill()


@pytest.fixture(scope="module")
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        pg = browser.new_page(viewport={"width": 1440, "height": 900}, device_scale_factor=1)

        def offline(route):  # the app must work with no network: refuse, and remember, any other host
            host = route.request.url.split("/")[2].split(":")[0] if "://" in route.request.url else ""
            if route.request.url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
                route.continue_()
            else:
                EXTERNAL.append(route.request.url)
                route.abort()

        pg.route("**/*", offline)
        yield pg
        browser.close()


@pytest.fixture(autouse=True)
def no_request_leaves_the_machine():
    EXTERNAL.clear()
    yield
    assert not EXTERNAL, f"the app requested other hosts: {sorted(set(EXTERNAL))[:5]}"


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
    page.wait_for_selector(".js-plotly-plot .scatterlayer .trace", timeout=60_000)  # Plotly draws after the run
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


# canvas pixels: a T whose bar spans the canvas from edge to edge and whose stem reaches the bottom
EDGE_TO_EDGE_T = [[(4, 6), (276, 6)], [(140, 6), (140, 275)]]
_INK_AT_EDGES = """(c) => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height); const w = c.width, h = c.height;
  const ink = (x, y) => d.data[4 * (y * w + x)] > 128;
  const strip = (test) => { for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if (test(x, y) && ink(x, y)) return true; return false; };
  const m = Math.round(0.03 * w);
  return [strip((x) => x < m), strip((x) => x >= w - m), strip((x, y) => y < m), strip((x, y) => y >= h - m)]; }"""
# Does a click at each point reach the canvas component (its canvas, or its own toolbar, which
# floats over the top edge), not a clipping parent or another element?
_HITS_CANVAS = """(pts) => pts.map(([x, y]) => { let e = document.elementFromPoint(x, y);
  while (e && e.shadowRoot) { const inner = e.shadowRoot.elementFromPoint(x, y); if (!inner || inner === e) break; e = inner; }
  return !!e && (e.classList.contains('upper-canvas') || !!e.closest('.dc-toolbar-card')); })"""
_TRUNCATED = """() => [...document.querySelectorAll('[data-testid=stMain] button p, [data-testid=stMain] label p, '
  + '[data-testid=stMain] h3, .gtitle')].filter(e => e.scrollWidth > e.clientWidth + 1 || (e.getBBox &&
  e.closest('svg') && e.getBBox().width > e.closest('svg').getBoundingClientRect().width)).map(e => e.textContent)"""


@pytest.mark.parametrize("sidebar", ["open", "closed"])
@pytest.mark.parametrize("width, height", [(1280, 800), (1920, 1080)])
def test_draw_canvas_fits_and_reads_an_edge_to_edge_character(app_url, page, width, height, sidebar):
    """The whole canvas and its toolbar are visible and drawable at 1280 and 1920 px, sidebar open
    or closed; strokes reaching all four edges arrive, and a clearly drawn T is read as T."""
    page.set_viewport_size({"width": width, "height": height})
    page.goto(f"{app_url}/draw")
    _settle(page)
    _browser.set_sidebar(page, sidebar == "open")
    canvas = page.locator(_browser.CANVAS).first
    canvas.wait_for(timeout=30_000)
    box = canvas.bounding_box()
    assert box["width"] == box["height"] == 280
    assert 0 <= box["x"] and box["x"] + box["width"] <= width and box["y"] + box["height"] <= height, box
    inset = [(box["x"] + dx, box["y"] + dy) for dx in (2, box["width"] - 3) for dy in (2, box["height"] - 3)]
    assert all(page.evaluate(_HITS_CANVAS, inset)), f"part of the canvas is hidden at {width} px, sidebar {sidebar}"
    tools = [b for b in (page.locator("[data-testid=stBidiComponentIsolated] button").nth(i).bounding_box()
                         for i in range(page.locator("[data-testid=stBidiComponentIsolated] button").count())) if b]
    assert len(tools) >= 4  # upload, undo, redo, pen, clear: the canvas's toolbar (menus stay hidden)
    assert all(0 <= b["x"] and b["x"] + b["width"] <= width and b["y"] >= 0 for b in tools), "toolbar out of view"
    assert all(page.evaluate(_HITS_CANVAS, [(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2) for b in tools]))
    _browser.draw_strokes(page, EDGE_TO_EDGE_T, box)
    _settle(page)
    _no_exception(page, "draw")
    strokes = page.locator("[data-testid=stBidiComponentIsolated] canvas.dc-canvas.lower-canvas").first
    assert strokes.evaluate(_INK_AT_EDGES) == [True] * 4  # left, right, top, bottom
    assert _browser.verdict_top1(page) == "T", page.locator("h3", has_text="Looks like").first.inner_text()
    from charlab.predict import load_predictor

    side = load_predictor(ROOT / "checkpoints" / "default.pt").config.data.image_size  # the model input the page shows
    assert page.get_by_text(f"input {side}×{side}").count() >= 1
    assert page.evaluate(_TRUNCATED) == [], "truncated labels"
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"draw-{width}x{height}-sidebar-{sidebar}.png"))
    _browser.set_sidebar(page, True)
    page.set_viewport_size({"width": 1440, "height": 900})


def test_draw_page_agrees_with_predict_on_test_split_strokes(app_url, page, chars74k_test_zip):
    """Test-split characters replayed as mouse strokes on the Draw page are read as `predict`
    reads the same strokes rendered offline (the page adds nothing and loses nothing)."""
    import io
    import zipfile

    from PIL import Image

    from charlab.data.classes import chars74k_class_name
    from charlab.data.strokes import PEN_PX, image_strokes, render_strokes
    from charlab.predict import load_predictor

    with zipfile.ZipFile(chars74k_test_zip) as zf:
        names = sorted(n for n in zf.namelist() if n.lower().endswith(".png"))
        picks = names[:: max(1, len(names) // 12)][:12]  # 12 characters spread over the classes
        images = [(Image.open(io.BytesIO(zf.read(n))), chars74k_class_name(Path(n).parent.name)) for n in picks]
    pred = load_predictor(ROOT / "checkpoints" / "default.pt")  # the model the app under test shows
    page.goto(f"{app_url}/draw")
    _settle(page)
    offline, online, truth = [], [], []
    for img, label in images:
        lines = image_strokes(img)
        offline.append(pred.predict_images([render_strokes(lines, pen=PEN_PX)], 1)[0][0][0])
        _browser.draw_strokes(page, lines, page.locator(_browser.CANVAS).first.bounding_box())
        _settle(page)
        online.append(_browser.verdict_top1(page))
        truth.append(label)
        _browser.clear_canvas(page)
    agree = np.mean([a == b for a, b in zip(online, offline)])
    acc_page = np.mean([a == t for a, t in zip(online, truth)])
    acc_offline = np.mean([a == t for a, t in zip(offline, truth)])
    print(f"page {acc_page:.0%} · offline {acc_offline:.0%} · agreement {agree:.0%} on {len(truth)} characters")
    # the mouse samples a stroke at its own points (a close call can tip): at most 2 of 12 differ
    assert agree >= 10 / 12, list(zip(truth, online, offline))
    assert abs(acc_page - acc_offline) <= 2 / 12


def test_draw_page_reads_an_uploaded_photo_and_refuses_a_bad_file(app_url, page, tmp_path):
    """Upload mode: a large, dark-on-light, unevenly lit photo of a T is read as T; a file that is
    not an image gets one clear line, no exception."""
    from PIL import Image, ImageDraw

    a = np.full((1800, 2400), 235, np.uint8)
    im = Image.fromarray(a)
    d = ImageDraw.Draw(im)
    d.line([(800, 450), (1600, 450)], fill=40, width=60)
    d.line([(1200, 450), (1200, 1400)], fill=40, width=60)
    shade = np.linspace(0.45, 1.0, a.shape[1])[None, :]  # a shadow over the left of the sheet
    photo = tmp_path / "photo.jpg"
    Image.fromarray((np.asarray(im) * shade).astype(np.uint8)).convert("RGB").save(photo, quality=85)
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    page.goto(f"{app_url}/draw")
    _settle(page)
    page.get_by_text("Upload a photo").first.click()
    _settle(page)
    page.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(str(photo))
    page.get_by_text("Looks like").first.wait_for(timeout=120_000)
    _settle(page)
    _no_exception(page, "draw (upload)")
    assert _browser.verdict_top1(page) == "T"
    page.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(str(bad))
    page.get_by_text("is not an image").first.wait_for(timeout=60_000)
    _settle(page)
    _no_exception(page, "draw (bad upload)")
    assert page.locator("[data-testid=stAlertContentError]").count() == 1
