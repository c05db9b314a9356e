"""The app in headless Chromium for the benchmarks: a `streamlit run app.py` on a free local port
and a Playwright page on it. Only used when Debian's Chromium and Playwright are installed."""
from __future__ import annotations

import contextlib
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


def start_server(port: int, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                            cwd=ROOT, env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


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
