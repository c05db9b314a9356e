"""The Dataset page's data-health map in headless Chromium: it renders for the synthetic source,
Chars74K and a 60,000-image folder, and a lasso drawn with the mouse opens the images it encloses.
Screenshots at 1280×800 and 1920×1080 go to screenshots/ (git-ignored)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from app_fixtures import ROOT
from test_browser import CHROMIUM, CHROMIUM_ARGS, SHOTS, _no_exception, app_url  # noqa: F401 - the server fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def browser(app_url):  # noqa: F811
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def _default_predictor():
    """The model the app under test starts with (app_url copies it): the health map's embedding."""
    from charlab.predict import load_predictor

    return load_predictor(ROOT / "checkpoints" / "default.pt")


def _wait(pg, timeout_s: float = 420) -> None:
    """Until the script has finished AND the health section is drawn (a first check takes a while)."""
    pg.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=timeout_s * 1000)
    pg.get_by_text("Map (", exact=False).first.wait_for(timeout=timeout_s * 1000)
    pg.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=timeout_s * 1000)
    pg.wait_for_timeout(1500)


def _open(browser, url: str, size: tuple[int, int], path_source: str | None = None):
    pg = browser.new_page(viewport={"width": size[0], "height": size[1]}, device_scale_factor=1)
    pg.goto(f"{url}/dataset")
    pg.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=120_000)
    if path_source:
        side = pg.locator("[data-testid=stSidebar]")
        side.locator("[data-testid=stSelectbox]").first.click()
        pg.get_by_role("option", name="Folder or zip").click()
        box = side.get_by_placeholder("/data/chars74k_hnd/trainPart1.zip")
        box.wait_for(timeout=30_000)
        box.fill(path_source)
        box.press("Enter")
        pg.wait_for_timeout(1000)
    _wait(pg)
    _no_exception(pg, "dataset")
    return pg


def _map_box(pg):
    plot = pg.locator(".js-plotly-plot").filter(has=pg.locator(".scatterlayer, .gl-container")).last
    plot.scroll_into_view_if_needed()
    box = plot.locator(".nsewdrag").first.bounding_box()
    assert box and box["width"] > 300, f"the map is too small to use: {box}"
    return box


def _shoot(pg, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    h = pg.evaluate("() => document.querySelector('[data-testid=stMain]').scrollHeight")
    w = pg.viewport_size["width"]
    pg.set_viewport_size({"width": w, "height": max(800, min(int(h) + 40, 7000))})
    pg.wait_for_timeout(1200)
    pg.screenshot(path=str(SHOTS / f"{name}-{w}.png"))


def _lasso(pg, box) -> None:
    """A lasso round the middle of the map (the figure's default drag mode)."""
    cx, cy, rx, ry = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, box["width"] / 3, box["height"] / 3
    pg.mouse.move(cx - rx, cy - ry)
    pg.mouse.down()
    for t in np.linspace(0, 2 * np.pi, 40):
        pg.mouse.move(cx + rx * np.cos(t + np.pi * 1.25), cy + ry * np.sin(t + np.pi * 1.25), steps=2)
    pg.mouse.up()


@pytest.mark.parametrize("size", [(1280, 800), (1920, 1080)])
def test_map_lasso_shows_the_enclosed_images(app_url, browser, size):  # noqa: F811
    pg = _open(browser, app_url, size)
    assert pg.get_by_text("Leaks", exact=True).count() == 1
    _lasso(pg, _map_box(pg))
    heading = pg.locator("h3", has_text="selected image")
    heading.first.wait_for(timeout=120_000)
    pg.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=120_000)
    n = int(heading.first.inner_text().split()[0])
    assert n >= 5, f"a lasso round a third of the map selected only {n} images"
    # the images themselves, with their labels, and the relabel / exclude form
    assert pg.locator("[data-testid=stImage]").count() >= 5
    assert pg.get_by_role("button", name="Exclude").count() == 1
    _no_exception(pg, "dataset after a lasso")
    _shoot(pg, "dataset-health-synthetic")
    pg.close()


# The most isolated point of the map on screen (so the pointer can only mean that one), with its
# customdata ([row, label, split, path, flag, sprite cell]) and its page coordinates.
_ISOLATED = """() => {
  const gd = document.querySelector('.st-key-dh_map_chart .js-plotly-plot');
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.querySelector('.nsewdrag').getBoundingClientRect();
  const pts = [];
  gd._fullData.forEach((t) => { if (t.customdata) Array.from(t.x).forEach((x, i) => pts.push(
      {px: box.left + xa.l2p(x), py: box.top + ya.l2p(t.y[i]), cd: Array.from(t.customdata[i])})); });
  let best = null, bestD = -1;
  for (const p of pts.slice(0, 3000)) {
    if (p.px < box.left + 20 || p.px > box.right - 20 || p.py < box.top + 20 || p.py > box.bottom - 20) continue;
    let d = Infinity;
    for (const q of pts) if (q !== p) d = Math.min(d, (p.px - q.px) ** 2 + (p.py - q.py) ** 2);
    if (d > bestD) { bestD = d; best = p; }
  }
  return {x: best.px, y: best.py, cd: best.cd.map(String), gap: Math.sqrt(bestD)};
}"""

_THUMB_PIXELS = """() => {
  const tip = document.querySelector('[data-testid=charlabHoverThumb]');
  const c = tip.querySelector('canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const r = tip.getBoundingClientRect();
  return {w: c.width, h: c.height, red: Array.from(d.filter((_, i) => i % 4 === 0)), path: tip.dataset.path,
          row: tip.dataset.row, visible: getComputedStyle(tip).display !== 'none', text: tip.innerText,
          box: [r.left, r.top, r.right, r.bottom]};
}"""


def _hover_isolated(pg):
    """Hover the map's most isolated point: (that point, the thumbnail shown), once the thumbnail
    is checked to name that point, as Plotly's own hover label does."""
    pg.wait_for_timeout(1000)  # the hover element attaches to the chart within half a second
    p = pg.evaluate(_ISOLATED)
    assert p["gap"] > 3, f"no point stands apart from the others on the map ({p['gap']:.1f} px)"
    row, path = p["cd"][0], p["cd"][3]
    pg.mouse.move(p["x"] - 30, p["y"] - 30)
    pg.mouse.move(p["x"], p["y"], steps=5)
    pg.wait_for_function("() => { const t = document.querySelector('[data-testid=charlabHoverThumb]');"
                         " return t && t.style.display === 'block'; }", timeout=10_000)
    pg.wait_for_timeout(300)  # the sprite sheet decodes once
    got = pg.evaluate(_THUMB_PIXELS)
    assert got["path"] == path and got["row"] == row, f"hovered {path} (row {row}) but the thumbnail shows {got['path']}"
    assert path in pg.evaluate("() => Array.from(document.querySelectorAll('.hoverlayer'), e => e.textContent).join(' ')")
    return p, got


@pytest.mark.parametrize("size", [(1280, 800), (1920, 1080)])
def test_hovering_a_point_shows_its_image(app_url, browser, size):  # noqa: F811
    """The floating thumbnail is the hovered point's own image, pixel for pixel, and it goes away
    when the pointer leaves the point."""
    from charlab.config import DataConfig
    from charlab.data import load_splits
    from charlab.health import prepared_for
    from charlab.labels import resolve

    pg = _open(browser, app_url, size)
    _map_box(pg)
    p, got = _hover_isolated(pg)
    row, label, split, path, flag, cell = p["cd"]
    assert label in got["text"] and split in got["text"]
    # the pixels: that image as the model sees it (at the model's input size, as the page loads it
    # for the model embedding), loaded here from the same source (the map's rows are train, then
    # validation, then test)
    cfg = prepared_for(DataConfig(source="synthetic", labels=resolve("auto", "synthetic")), _default_predictor())
    splits = load_splits(cfg)
    images = torch.cat([d.images for d in (splits.train, splits.val, splits.test) if d is not None and len(d)])
    want = images[int(row), 0].numpy()
    shown = np.array(got["red"], np.uint8).reshape(got["h"], got["w"])
    assert shown.shape == want.shape
    assert np.abs(shown.astype(int) - want).max() <= 2, "the thumbnail is not the hovered point's image"
    other = images[(int(row) + 1) % len(images), 0].numpy()
    assert np.abs(shown.astype(int) - other).mean() > 5  # a different image would not pass
    # beside the pointer, fully inside the window
    left, top, right, bottom = got["box"]
    assert 0 <= left and right <= size[0] and 0 <= top and bottom <= size[1], got["box"]
    assert right - left >= 80, "the thumbnail is too small to read"
    SHOTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"dataset-health-hover-{size[0]}.png"))
    pg.mouse.move(size[0] - 5, 5, steps=5)  # off the map
    pg.wait_for_function("() => document.querySelector('[data-testid=charlabHoverThumb]').style.display === 'none'",
                         timeout=10_000)
    _no_exception(pg, "dataset after hovering")
    pg.close()


def test_map_renders_for_chars74k(app_url, browser, chars74k_train_zip):  # noqa: F811
    pg = _open(browser, app_url, (1280, 800), str(chars74k_train_zip))
    assert pg.get_by_text("near-copy in train", exact=False).count() >= 1
    _map_box(pg)
    _shoot(pg, "dataset-health-chars74k")
    pg.close()


def test_map_renders_for_a_60000_image_folder(app_url, browser, tmp_path_factory):  # noqa: F811
    """Cold (empty caches) ~50 s alone on a quiet machine, up to 2 min inside the full suite
    (BENCHMARKS.md, "Data health"): writing the files, then in the app decoding, embedding, the
    raw pass, the neighbour scan and a map of 15,000 of the points, then drawing them, a hover
    and a lasso."""
    from PIL import Image

    from charlab.config import DataConfig
    from charlab.data import load_source

    root = tmp_path_factory.mktemp("folder60k")
    ds = load_source("synthetic:classes=digits,n=6000,test_n=5", DataConfig(source="synthetic"), split="train")
    imgs, labels = ds.images[:, 0].numpy(), ds.labels.numpy()
    for c in ds.classes:
        (root / c).mkdir()
    for i in range(len(ds)):  # dark ink on white paper, as scans come
        Image.fromarray(255 - imgs[i]).save(root / ds.classes[labels[i]] / f"{i:05d}.png", compress_level=1)
    assert len(ds) == 60_000
    pg = _open(browser, app_url, (1920, 1080), str(root))
    box = _map_box(pg)
    assert pg.locator(".js-plotly-plot .gl-container canvas, .js-plotly-plot .scatterlayer").count() >= 1
    assert pg.get_by_text("15,000 of the 60,000 images", exact=False).count() == 1  # a sample, said so
    _, got = _hover_isolated(pg)
    side = _default_predictor().input_shape[0]  # the model embedding's input size
    assert got["w"] == got["h"] == side and max(got["red"]) > 128  # a character, not an empty cell
    _lasso(pg, box)
    pg.locator("h3", has_text="selected image").first.wait_for(timeout=180_000)
    _shoot(pg, "dataset-health-60k")
    pg.close()
