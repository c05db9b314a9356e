"""The app in headless Chromium for the benchmarks: a `streamlit run app.py` on a free local port
and a Playwright page on it. Only used when Debian's Chromium and Playwright are installed."""
from __future__ import annotations

import contextlib
import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ..errors import CharlabError

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# The app's script run has finished (reruns and fragment runs alike set it to "running").
IDLE = "[data-testid=stApp][data-test-script-state=notRunning]"


def available() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return Path(CHROMIUM).exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, env: dict | None = None, keep_output: bool = False) -> subprocess.Popen:
    """`streamlit run app.py` on 127.0.0.1:port; keep_output: its stdout+stderr on a pipe (for a
    test's failure message)."""
    out = subprocess.PIPE if keep_output else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                            cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out,
                            stderr=subprocess.STDOUT if keep_output else subprocess.DEVNULL)


def wait_healthy(url: str, proc: subprocess.Popen, t0: float, timeout: float) -> None:
    while True:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=1).status == 200:
                return
        except OSError:
            time.sleep(0.05)
        if time.perf_counter() - t0 > timeout or proc.poll() is not None:
            raise CharlabError("streamlit run did not start for the browser measurement")


@contextlib.contextmanager
def app_page(width: int = 1440, height: int = 900, env: dict | None = None, timeout: float = 120):
    """(url, page) of a fresh server; both are closed on exit."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        proc = start_server(port, env)
        try:
            wait_healthy(url, proc, time.perf_counter(), timeout)
            page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
            yield url, page
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            browser.close()


def settle(page, timeout_s: float = 300) -> None:
    """Until the script run is over and the charts have drawn."""
    page.wait_for_selector(IDLE, timeout=timeout_s * 1000)
    page.wait_for_timeout(800)
    page.wait_for_selector(IDLE, timeout=timeout_s * 1000)


def percentiles(times: list[float]) -> dict:
    import numpy as np

    a = np.asarray(times, dtype=float) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 1), "p95_ms": round(float(np.percentile(a, 95)), 1),
            "n": len(a)}


# An Errors page's cell click is done when the cell's heading names the new cell, the script (or
# fragment) run is over, and every image of the cell's gallery has decoded.
_CELL_SHOWN = """([before, want]) => {
  if (!document.querySelector('[data-testid=stApp][data-test-script-state=notRunning]')) return false;
  const h = [...document.querySelectorAll('h3')].find(e => e.innerText.includes('→ predicted'));
  if (!h || h.innerText === before) return false;
  const col = h.closest('.st-key-err_cell_box') || h.closest('[data-testid=stColumn]');
  const imgs = col ? [...col.querySelectorAll('[data-testid=stImage] img, img')] : [];
  return imgs.length >= want && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""


def errors_cell_clicks(page, url: str, clicks: int = 10) -> dict:
    """Click `clicks` different error cells of the Errors page's confusion matrix; per click the
    seconds from the mouse click to the cell's images shown."""
    page.goto(f"{url}/errors")
    settle(page)
    page.locator("h3", has_text="→ predicted").first.wait_for(timeout=300_000)
    page.wait_for_selector(".js-plotly-plot .scatterlayer .trace", timeout=60_000)  # Plotly draws after the run
    times = []
    for k in range(clicks):
        before = page.locator("h3", has_text="→ predicted").first.inner_text()
        # _fullData holds the decoded arrays (numpy columns arrive base64-packed in .data)
        data = page.evaluate("() => { const d = document.querySelector('.js-plotly-plot')._fullData[1];"
                             " return [Array.from(d.x), Array.from(d.y), Array.from(d.customdata, r => r[2])]; }")
        cells = [i for i, (x, y, _) in enumerate(zip(*data)) if f"'{y}' → predicted '{x}'" not in before]
        if not cells:
            break
        i = cells[(k * 7) % len(cells)]
        want = min(int(data[2][i]), 40)
        pt = page.locator(".js-plotly-plot .scatterlayer .trace").nth(1).locator("path.point").nth(i)
        pt.scroll_into_view_if_needed()
        box = pt.bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx, cy)
        t = time.perf_counter()
        page.mouse.click(cx, cy)
        page.wait_for_function(_CELL_SHOWN, arg=[before, want], timeout=120_000, polling=10)
        times.append(time.perf_counter() - t)
        page.wait_for_timeout(300)
    return percentiles(times)


def set_sidebar(page, want_open: bool) -> None:
    """Open or close the app's sidebar (its state survives page loads)."""
    sb = page.locator("[data-testid=stSidebar]")
    if (sb.get_attribute("data-collapsed") != "true") == want_open:
        return
    if want_open:
        page.locator("[data-testid=stExpandSidebarButton], [data-testid=stSidebarCollapsedControl] button").first.click()
    else:
        sb.hover()
        page.locator("[data-testid=stSidebarCollapseButton] button").first.click()
    page.wait_for_timeout(600)


CANVAS = "[data-testid=stBidiComponentIsolated] canvas.upper-canvas"

# Timestamps (performance.now()) of the app's script-run state changes, recorded in the page.
_WATCH_RUNS = """() => {
  if (window.__runs) return;
  window.__runs = [];
  const app = document.querySelector('[data-testid=stApp]');
  new MutationObserver(() => window.__runs.push([performance.now(), app.getAttribute('data-test-script-state')]))
    .observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""
_RUN_DONE_AFTER = """(t) => { const r = window.__runs; const i = r.findIndex(([at, s]) => at >= t && s === 'running');
  return i >= 0 && r.slice(i).some(([, s]) => s === 'notRunning'); }"""
_DONE_AT = """(t) => { const r = window.__runs; const i = r.findIndex(([at, s]) => at >= t && s === 'running');
  return r.slice(i).find(([, s]) => s === 'notRunning')[0] - t; }"""


def draw_strokes(page, lines, box: dict, timeout_s: float = 120) -> list[float]:
    """Replay polylines (canvas pixels, (x, y)) as mouse strokes on the Draw canvas at `box`; after
    each stroke wait for the page's rerun to finish. Returns per stroke the seconds from mouse-up
    to that rerun's elements rendered (the script run over)."""
    page.evaluate(_WATCH_RUNS)
    sx, sy = box["width"] / 280.0, box["height"] / 280.0  # the canvas is 280 canvas px, however it is shown
    times = []
    for line in lines:
        pts = [(box["x"] + float(x) * sx, box["y"] + float(y) * sy) for x, y in line]
        if len(pts) == 1:  # a dot (the dot of an i): a tiny stroke, so the pen leaves a mark
            pts.append((pts[0][0] + 0.5, pts[0][1] + 0.5))
        page.mouse.move(*pts[0])
        page.mouse.down()
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            page.mouse.move(x1, y1, steps=max(1, int(math.hypot(x1 - x0, y1 - y0) // 8)))  # a move every ~8 px
        t = page.evaluate("performance.now()")
        page.mouse.up()
        page.wait_for_function(_RUN_DONE_AFTER, arg=t, timeout=timeout_s * 1000, polling=10)
        times.append(page.evaluate(_DONE_AT, t) / 1000)
    return times


def verdict_top1(page) -> str:
    """The Draw page's most likely class: "Looks like X" or "Looks like X or Y: 93% …" (X first)."""
    text = page.locator("h3", has_text="Looks like").first.inner_text()
    return text.split("Looks like", 1)[1].split()[0].rstrip(":")


def clear_canvas(page) -> None:
    page.get_by_role("button", name="Clear").click()
    page.get_by_text("Draw a character").first.wait_for(timeout=60_000)
    settle(page)


def draw_latency(page, url: str, drawings: list) -> dict:
    """Mouse-up -> prediction rendered on the Draw page, over every stroke of `drawings`
    (lists of polylines in canvas pixels), each drawn on a cleared canvas."""
    page.goto(f"{url}/draw")
    settle(page)
    times = []
    for lines in drawings:
        box = page.locator(CANVAS).first.bounding_box()
        times += draw_strokes(page, lines, box)
        clear_canvas(page)
    return percentiles(times)
