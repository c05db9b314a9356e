"""The relabel loop in a real browser: a copy of Chars74K's A-E with folders A and B swapped, the
shipped synthetic-only model as reference. Open the Labels page (it audits on arrival), read the
diagnosis, drop one image from the grid and undo it, fix the swap with one click, and see the
Dataset page load the fixed labels; the override file on disk follows each step.
Screenshots at 1280×800 and 1920×1080 go to screenshots/ (git-ignored)."""
from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from app_fixtures import ROOT
from test_browser import CHROMIUM, CHROMIUM_ARGS, SHOTS, _no_exception, _settle

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, chars74k_train_zip):
    from charlab.bench._browser import free_port, start_server, wait_healthy
    from charlab.bench.labels import relabelled_zip
    from charlab.config import DataConfig
    from charlab.data import load_source

    if not __import__("pathlib").Path(CHROMIUM).exists():
        from conftest import missing

        missing(f"{CHROMIUM} not installed (.ci/run installs it with apt-get)")
    home = tmp_path_factory.mktemp("labels_app")
    full = load_source(str(chars74k_train_zip), DataConfig())
    y, cl = full.labels.numpy(), full.classes
    sw = y.copy()
    sw[y == cl.index("A")], sw[y == cl.index("B")] = cl.index("B"), cl.index("A")
    src = relabelled_zip(chars74k_train_zip, home / "swapped.zip", full, sw,
                         keep=np.flatnonzero(np.isin(y, [cl.index(c) for c in "ABCDE"])))
    (home / "checkpoints").mkdir()
    shutil.copy(ROOT / "checkpoints" / "synthetic.pt", home / "checkpoints" / "synthetic.pt")
    port = free_port()
    env = {"CHARLAB_RUNS": str(home / "runs"), "CHARLAB_CHECKPOINTS": str(home / "checkpoints"),
           "CHARLAB_USER_DATA": str(home / "user_data")}
    proc = start_server(port, env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, time.perf_counter(), 90)
        yield url, src, home / "user_data" / "labels"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except __import__("subprocess").TimeoutExpired:
            proc.kill()


def _shoot(pg, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    for w, h in ((1280, 800), (1920, 1080)):
        pg.set_viewport_size({"width": w, "height": h})
        _settle(pg)
        pg.screenshot(path=str(SHOTS / f"{name}-{w}.png"))
        pg.get_by_role("heading", name="Review").evaluate("e => e.scrollIntoView({block: 'start'})")  # the grid
        pg.wait_for_timeout(500)
        pg.screenshot(path=str(SHOTS / f"{name}-grid-{w}.png"))
        pg.evaluate("() => document.querySelector('[data-testid=stMain]').scrollTo(0, 0)")
    pg.set_viewport_size({"width": 1280, "height": 800})


def _entries(folder) -> list[dict]:
    files = list(folder.glob("*.json"))
    return json.loads(files[0].read_text())["entries"] if files else []


def _with_source(browser, url: str, src):
    """A 1280×800 page of the app with `src` chosen as a folder-or-zip source in the sidebar."""
    pg = browser.new_page(viewport={"width": 1280, "height": 800})
    pg.goto(url)
    _settle(pg)
    side = pg.locator("[data-testid=stSidebar]")
    side.locator("[data-testid=stSelectbox]").first.click()  # Source
    pg.get_by_role("option", name="Folder or zip").click()
    _settle(pg)
    box = side.get_by_label("Path to a folder or .zip", exact=True).and_(side.locator("input"))
    box.fill(str(src))
    box.press("Enter")
    _settle(pg)
    return pg


def test_fix_a_swap_in_the_app(lab):
    from playwright.sync_api import sync_playwright

    url, src, labels_dir = lab
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        pg = _with_source(browser, url, src)

        pg.locator("[data-testid=stSidebarNavLink]", has_text="Labels").click()  # click 1: the page audits on arrival
        pg.get_by_text("folders A and B are swapped").wait_for(timeout=180_000)
        _settle(pg)
        _no_exception(pg, "labels")
        _shoot(pg, "labels")
        assert _entries(labels_dir) == []

        pg.locator("[data-testid=stButton] button", has_text="Drop").first.click()  # one card: exclude
        pg.get_by_role("button", name="Undo: exclude").wait_for(timeout=60_000)
        _settle(pg)
        assert [e["action"] for e in _entries(labels_dir)] == ["exclude"]
        pg.get_by_role("button", name="Undo: exclude").click()
        pg.get_by_role("button", name="Nothing to undo").wait_for(timeout=60_000)
        _settle(pg)
        assert _entries(labels_dir) == []

        pg.get_by_role("button", name="Apply the swap A ↔ B").click()  # click 2: the fix
        pg.get_by_role("button", name="Undo: apply the swap A ↔ B").wait_for(timeout=60_000)
        _settle(pg)
        fixed = _entries(labels_dir)
        assert len(fixed) >= 70 and all(e["action"] == "relabel" and {e["given"], e["label"]} == {"A", "B"}
                                        for e in fixed)
        assert pg.get_by_role("button", name="Swap A ↔ B applied").count() == 1
        _shoot(pg, "labels-fixed")

        pg.locator("[data-testid=stSidebarNavLink]", has_text="Dataset").click()  # the sidebar's source now loads with the file applied
        pg.get_by_text(f"{len(fixed)} relabelled").first.wait_for(timeout=120_000)
        _settle(pg)
        _no_exception(pg, "dataset")
        browser.close()


def test_look_alikes_apart_in_the_app(lab, chars74k_train_zip):
    """The real, clean trainPart1: a Clean verdict that reads true, the look-alike twins (c read as C)
    counted apart and reviewable under their own filter, never in the bulk accept."""
    from playwright.sync_api import sync_playwright

    url, _, labels_dir = lab
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        pg = _with_source(browser, url, chars74k_train_zip)
        pg.locator("[data-testid=stSidebarNavLink]", has_text="Labels").click()
        pg.get_by_text("case/look-alike ambiguities (such as c read as C) are not counted").wait_for(timeout=180_000)
        _settle(pg)
        _no_exception(pg, "labels-clean")
        assert pg.locator("[data-testid=stAlertContentSuccess]").inner_text().startswith("Clean")
        bulk = pg.locator("[data-testid=stButton] button", has_text="suspects").first.inner_text()  # "Accept N suspects"
        assert 0 < int(bulk.split()[1]) < 60, bulk  # 30 (112 with the twins)
        _shoot(pg, "labels-clean")
        pg.locator("[data-testid=stButtonGroup] button", has_text="look-alikes").click()
        _settle(pg)
        pg.get_by_text("look-alike ambiguities, most suspect first").wait_for(timeout=60_000)
        _shoot(pg, "labels-lookalikes")
        from charlab.labels import default_path_for

        assert not (labels_dir / default_path_for(str(chars74k_train_zip)).name).exists()  # looking writes nothing
        browser.close()
