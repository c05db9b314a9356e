"""The app: cold start, the Draw page's prediction latency, and click-to-result times in the browser.

Cold start is measured three ways, each in fresh processes (streamlit only ever runs in a
subprocess here; charlab itself never imports it):
- baseline: `python -c "import streamlit"`, the floor any Streamlit app pays;
- AppTest: a fresh interpreter that imports streamlit's test harness and runs the landing page
  of app.py to the end (sidebar included);
- browser (when Chromium and Playwright are installed): `streamlit run app.py` is started and a
  headless Chromium waits for the landing page's script run to finish; the clock starts with the
  server process.
The per-page figures are each page's first run in one AppTest session (data and model loads
included; the disk caches of charlab are warm after the first bench run).

Prediction latency is what the Draw page does after a stroke, server side: `Predictor.explain`
(preprocess the canvas image, one forward pass for the top-5 and Grad-CAM) with a cached model on
one thread (as the app does), against the obvious alternatives: the three passes it replaced,
loading the checkpoint for every prediction, and torch's default thread count.

In the browser (headless Chromium, a fresh server): the Draw page's mouse-up to the prediction
rendered (the rerun's elements on screen, p50/p95 over every stroke of a few drawn characters),
and the Errors page's confusion-matrix cell click to the cell's images decoded.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ..errors import CharlabError

ROOT = Path(__file__).resolve().parents[2]
PAGES = ("pages/dataset.py", "pages/augment.py", "pages/train.py", "pages/runs.py", "pages/errors.py",
         "pages/draw.py")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "default.pt"),
                   help="model for the prediction latency (default: the shipped checkpoints/default.pt)")
    p.add_argument("--repeats", type=int, default=3, help="cold starts per method (median reported)")
    p.add_argument("--predictions", type=int, default=50, help="predictions timed per method")
    p.add_argument("--no-browser", action="store_true", help="skip the Chromium measurement")
    p.add_argument("--no-pages", action="store_true", help="skip the per-page first-run figures")
    p.add_argument("--errors-clicks", type=int, default=10,
                   help="confusion-matrix cell clicks timed on the Errors page in the browser (0: skip)")
    p.add_argument("--draw-rounds", type=int, default=2,
                   help="times the 7 test characters (12 strokes) are drawn on the Draw page in the browser (0: skip)")
    p.add_argument("--only-browser", action="store_true",
                   help="only the browser's click-to-result figures (no cold starts, pages or latency)")


def _wall(cmd: list[str], timeout: float = 180) -> float:
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise CharlabError(f"{' '.join(cmd[:3])} … failed:\n{out.stderr[-1500:]}")
    return time.perf_counter() - t


_APPTEST_LANDING = ("from streamlit.testing.v1 import AppTest\n"
                    "at = AppTest.from_file('app.py', default_timeout=120); at.run()\n"
                    "assert not at.exception, [e.value for e in at.exception]\n")

_APPTEST_PAGES = """
import json, sys, time
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

# AppTest re-detects a pages/ folder before every run and would then run a page without app.py;
# the server decides once and st.navigation turns that off, as here (see tests/test_app_pages.py).
_init = PagesManager.__init__
def _v2_init(self, *a, **k):
    _init(self, *a, **k)
    PagesManager.uses_pages_directory = False
PagesManager.__init__ = _v2_init

at = AppTest.from_file('app.py', default_timeout=300); at.run()
out = {}
for page in sys.argv[1:]:
    at.switch_page(page)
    t = time.perf_counter(); at.run(); out[page] = time.perf_counter() - t
    if at.exception or at.error:
        out[page + ' error'] = (at.exception or at.error)[0].value[:300]
print(json.dumps(out))
"""


def _browser_cold_start(timeout: float = 120) -> float | None:
    from . import _browser

    if not _browser.available():
        return None
    from playwright.sync_api import sync_playwright

    port = _browser.free_port()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_browser.CHROMIUM, args=_browser.CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        t0 = time.perf_counter()
        proc = _browser.start_server(port)
        try:
            url = f"http://127.0.0.1:{port}"
            _browser.wait_healthy(url, proc, t0, timeout)
            page.goto(url)
            page.wait_for_selector(_browser.IDLE + " h1", timeout=timeout * 1000)
            return time.perf_counter() - t0
        finally:
            proc.terminate()
            proc.wait(10)
            browser.close()


def _browser_interactions(args: argparse.Namespace) -> dict:
    """Click-to-result figures in the browser: the Errors page's confusion-matrix cell clicks, and
    the Draw page's mouse-up to the prediction rendered (every stroke of DRAWINGS, `--draw-rounds` times)."""
    from . import _browser

    if not _browser.available():
        return {}
    out = {}
    with _browser.app_page() as (url, page):
        if args.draw_rounds > 0:
            for k, v in _browser.draw_latency(page, url, DRAWINGS * args.draw_rounds).items():
                out[f"draw_mouseup_to_prediction_{k}"] = v
        if args.errors_clicks > 0:
            for k, v in _browser.errors_cell_clicks(page, url, args.errors_clicks).items():
                out[f"errors_cell_click_{k}"] = v
    return out


# Characters drawn for the browser figure, as polylines in canvas pixels (280×280): L, T, 7, 4, A, E, H
DRAWINGS = [[[(84, 42), (84, 238), (210, 238)]],
            [[(56, 42), (224, 42)], [(140, 42), (140, 238)]],
            [[(70, 50), (210, 50), (118, 238)]],
            [[(168, 238), (168, 42), (56, 174), (224, 174)]],
            [[(56, 238), (140, 42), (224, 238)], [(92, 162), (188, 162)]],
            [[(196, 42), (84, 42), (84, 238), (196, 238)], [(84, 140), (174, 140)]],
            [[(70, 42), (70, 238)], [(210, 42), (210, 238)], [(70, 140), (210, 140)]]]


def _drawing():
    """A white "7" on a black 280×280 canvas, as the Draw page receives it."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (280, 280), "black")
    ImageDraw.Draw(im).line([(70, 62), (210, 62), (126, 224)], fill="white", width=20, joint="curve")
    return im


def _latency(checkpoint: str, n: int) -> dict:
    import numpy as np
    import torch

    from ..predict import load_predictor

    if not Path(checkpoint).exists():
        raise CharlabError(f"no checkpoint at {checkpoint}; train the default one (see README) or pass --checkpoint")
    img = _drawing()
    pred = load_predictor(checkpoint)

    def stroke():  # what the Draw page runs after every stroke: one preparation, one forward pass
        return pred.explain(img, top_k=5)

    def stroke_three_passes():  # what it ran before Predictor.explain: prepared twice, three forward passes
        top = pred.predict_images([img], top_k=5)
        seen = np.array(pred.prepare(img))  # writable, as the page passed it
        pred.saliency(seen, "grad_cam")
        return top

    def predict_only():
        return pred.predict_images([img], top_k=5)

    def reload_each_time():
        return load_predictor(checkpoint).predict_images([img], top_k=5)

    def median_ms(fn, reps: int) -> float:
        fn()  # warm-up
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
        return round(statistics.median(times), 2)

    default_threads = torch.get_num_threads()
    out = {"default_threads": default_threads}
    # The app runs inference on one thread (ui.predictor); the default thread count is the alternative.
    torch.set_num_threads(default_threads)
    out[f"stroke_ms_{default_threads}_threads"] = median_ms(stroke, n)
    torch.set_num_threads(1)
    out["stroke_ms"] = median_ms(stroke, n)
    out["stroke_three_passes_ms"] = median_ms(stroke_three_passes, n)
    out["predict_ms"] = median_ms(predict_only, n)
    out["reload_per_prediction_ms"] = median_ms(reload_each_time, max(5, n // 5))
    out["reload_slowdown"] = round(out["reload_per_prediction_ms"] / out["predict_ms"], 1)
    torch.set_num_threads(default_threads)
    return out


def run(args: argparse.Namespace) -> dict:
    py = sys.executable
    res: dict = {"machine": f"{os.cpu_count()}-core CPU", "python": sys.version.split()[0]}
    if args.only_browser:
        return {**res, **_browser_interactions(args)}
    res["import_streamlit_s"] = round(statistics.median(
        _wall([py, "-c", "import streamlit"]) for _ in range(args.repeats)), 3)
    res["apptest_landing_s"] = round(statistics.median(
        _wall([py, "-c", _APPTEST_LANDING]) for _ in range(args.repeats)), 3)
    res["landing_over_baseline_s"] = round(res["apptest_landing_s"] - res["import_streamlit_s"], 3)
    res["import_torch_s"] = round(_wall([py, "-c", "import torch"]), 3)  # what the landing page avoids
    if not args.no_browser:
        times = [t for t in (_browser_cold_start() for _ in range(args.repeats)) if t is not None]
        res["browser_cold_start_s"] = round(statistics.median(times), 3) if times else None
        res.update(_browser_interactions(args))
    if not args.no_pages:
        import json

        out = subprocess.run([py, "-c", _APPTEST_PAGES, *PAGES], cwd=ROOT, capture_output=True, text=True,
                             timeout=900)
        if out.returncode != 0:
            raise CharlabError(f"page timing failed:\n{out.stderr[-1500:]}")
        for page, v in json.loads(out.stdout.strip().splitlines()[-1]).items():
            res[f"first_run_{Path(page.split()[0]).stem}" + ("_error" if " error" in page else "_s")] = \
                v if isinstance(v, str) else round(v, 3)
    res.update(_latency(args.checkpoint, args.predictions))
    return res
