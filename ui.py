"""What every page of the app shares: the sidebar, the session's settings, cached loaders
and a few renderers (crisp image grids, error boxes).

No machine learning happens here: widgets -> charlab -> render. torch is imported only
inside the loaders that need it, so the landing page starts without it.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Optional

import numpy as np
import streamlit as st

from charlab.config import DataConfig, from_dict, to_dict
from charlab.errors import CharlabError

ROOT = Path(__file__).resolve().parent

IMAGE_SIZES = (28, 32, 64)
# Material icons ship with Streamlit, so they render in any browser (emoji need an emoji font).
ICONS = {"home": ":material/home:", "dataset": ":material/bar_chart:", "augment": ":material/shuffle:",
         "train": ":material/rocket_launch:", "runs": ":material/monitoring:", "errors": ":material/troubleshoot:",
         "draw": ":material/draw:", "labels": ":material/label:"}
# The app's own source kinds (files it keeps for the user); the data kinds come from charlab's registry.
APP_SOURCE_KINDS = {"upload": "Upload a zip", "drawings": "My drawings"}


# ---------------------------------------------------------------- session settings

def require_app_frame() -> None:
    """Make sure this page runs inside app.py's frame (sidebar, shared state).

    With a pages/ folder beside app.py, Streamlit's legacy multipage mode decides how the FIRST
    script run of a server process goes: opened at a page URL (a bookmark to /draw after a
    restart), it runs that page file alone, without app.py. st.navigation switches the legacy
    mode off for the process; here we do it ourselves and rerun, so app.py runs and routes to
    the same page. Every page calls this first.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def init_state() -> None:
    """Defaults of the settings every page reads; set once per session."""
    ss = st.session_state
    # Folders are overridable (env or preset session state) so tests, or several labs, can live elsewhere.
    ss.setdefault("runs_root", os.environ.get("CHARLAB_RUNS", str(ROOT / "runs")))
    ss.setdefault("checkpoints_dir", os.environ.get("CHARLAB_CHECKPOINTS", str(ROOT / "checkpoints")))
    user_data = Path(os.environ.get("CHARLAB_USER_DATA", ROOT / "user_data"))
    ss.setdefault("uploads_dir", str(user_data / "uploads"))
    ss.setdefault("drawings_dir", str(user_data / "drawings"))
    ss.setdefault("source", "synthetic")
    ss.setdefault("image_size", 28)
    ss.setdefault("model_ref", None)


def source() -> str:
    return st.session_state.get("source") or ""


def runs_root() -> str:
    return st.session_state["runs_root"]


def data_config(image_size: Optional[int] = None, src: Optional[str] = None) -> DataConfig:
    """The sidebar's data choice as the DataConfig every charlab call takes."""
    from charlab.labels import resolve

    s = src if src is not None else source()
    # the source's own label-override file (the Labels page writes it) follows the source everywhere
    return DataConfig(source=s, image_size=int(image_size or st.session_state.get("image_size", 28)),
                      labels=resolve("auto", s) if s else None)


def cfg_key(cfg: DataConfig) -> str:
    """A hashable, stable key for caching by data config."""
    d = to_dict(cfg)
    if cfg.labels:  # a new decision on the Labels page rewrites the file: load afresh (from_dict ignores the key)
        d["_labels_mtime"] = _mtime(cfg.labels)
    return json.dumps(d, sort_keys=True)


# ---------------------------------------------------------------- sidebar

def sidebar() -> None:
    """Data source, image size and active model; writes st.session_state[source|image_size|model_ref]."""
    ss = st.session_state
    with st.sidebar:
        st.subheader("Data")
        from charlab.data.sources import kinds as source_kinds

        registered = dict(source_kinds())
        titles = {name: kind.title for name, kind in registered.items()} | APP_SOURCE_KINDS
        names = [n for n in titles if n != "drawings" or _has_drawings(ss["drawings_dir"])]
        kind = st.selectbox("Source", names, format_func=titles.get, key="sb_kind",
                            help=" ".join(f"{k.title}: {k.help}" for k in registered.values() if k.help))
        ss["source"] = _source_widgets(kind, registered.get(kind))
        ss["image_size"] = st.segmented_control("Image size", IMAGE_SIZES, default=28, key="sb_size",
                                                required=True, format_func=lambda s: f"{s}×{s}")
        st.subheader("Model")
        choices = model_choices()
        if choices:
            refs = [ref for ref, _ in choices]
            labels = dict(choices)
            ss["model_ref"] = st.selectbox("Active model", refs, format_func=labels.get, key="sb_model",
                                           help="Used by the Errors and Draw pages. Checkpoints in "
                                                "checkpoints/ and the best weights of finished runs.")
        else:
            ss["model_ref"] = None
            st.caption("No model yet: train one on the Train page.")


def _source_widgets(name: str, kind) -> str:
    """The chosen kind's widgets, built from the options it declares -> its source string."""
    if name == "upload":
        return _upload_widgets()
    if name == "drawings":
        st.caption(f"Your saved drawings: `{st.session_state['drawings_dir']}`")
        return st.session_state["drawings_dir"]
    if kind is None:
        raise CharlabError(f"unknown source kind {name!r}")
    return kind.compose({opt.name: option_widget(opt, key=f"sb_{name}_{opt.name}") for opt in kind.options})


def option_widget(opt, key: str) -> Any:
    """One widget for a declared option (charlab.data.sources.Option): a slider over numeric
    choices, a menu over other choices, a checkbox, a number box or a text box."""
    label, help_ = opt.label or opt.name, opt.help or None
    if opt.choices:
        if opt.type in (int, float):
            return st.select_slider(label, opt.choices, value=opt.default, key=key, help=help_, format_func=opt.display)
        index = opt.choices.index(opt.default) if opt.default in opt.choices else 0
        return st.selectbox(label, opt.choices, index=index, key=key, help=help_, format_func=opt.display)
    if opt.type is bool:
        return st.checkbox(label, value=bool(opt.default), key=key, help=help_)
    if opt.type in (int, float):
        return st.number_input(label, value=opt.type(opt.default or 0), key=key, help=help_)
    return st.text_input(label, value=opt.default or "", key=key, placeholder=opt.placeholder or None,
                         help=help_).strip()


def _upload_widgets() -> str:
    from charlab.io import atomic_write_bytes

    uploads = Path(st.session_state["uploads_dir"])
    up = st.file_uploader("Zip with one folder per class", type=["zip"], key="sb_upload")
    if up is not None:
        target = uploads / safe_name(up.name)
        if not target.exists() or target.stat().st_size != up.size:
            atomic_write_bytes(target, up.getvalue())
        if st.session_state.get("sb_last_upload") != (up.name, up.size):  # a new upload: select it once
            st.session_state["sb_last_upload"] = (up.name, up.size)
            st.session_state["sb_uploaded"] = target.name
    saved = sorted(p.name for p in uploads.glob("*.zip")) if uploads.is_dir() else []
    if not saved:
        return ""
    name = st.selectbox("Uploaded zips", saved, key="sb_uploaded")
    return str(uploads / name)


def safe_name(name: str) -> str:
    """A file name without folders or odd characters (uploads come from anywhere)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).strip("._") or "upload"
    return stem if stem.lower().endswith(".zip") else stem + ".zip"


def _has_drawings(folder: str) -> bool:
    p = Path(folder)
    return p.is_dir() and any(p.glob("*/*.png"))


@st.cache_data(ttl=3, max_entries=4, show_spinner=False)
def _model_choices(root: str, ckpt_dir: str) -> list[tuple[str, str]]:
    from charlab.runs import list_runs

    out = [(str(p), f"{p.stem} (checkpoints/{p.name})") for p in sorted(Path(ckpt_dir).glob("*.pt"))]
    try:
        runs = list_runs(root)
    except CharlabError:
        runs = []
    for r in runs:
        best = r.best_checkpoint
        if best is not None:
            acc = f" · val acc {r.best_val_acc:.1%}" if r.best_val_acc is not None else ""
            out.append((str(best), f"{short_run_id(r.id)}{acc}"))
    return out


def short_run_id(run_id: str) -> str:
    """'20261120-223351-kaggle_cnn-03cc11' -> 'kaggle_cnn-03cc11': readable in legends and pickers."""
    parts = run_id.split("-", 2)
    return parts[2] if len(parts) == 3 and parts[0].isdigit() else run_id


def model_choices() -> list[tuple[str, str]]:
    """(checkpoint path, label) for checkpoints/*.pt and finished runs' best.pt."""
    return _model_choices(runs_root(), st.session_state["checkpoints_dir"])


# ---------------------------------------------------------------- cached loaders

class _Bar:
    """A progress(done, total, msg) callback drawing an st.progress, throttled to whole percents
    (inside a cached function every update is recorded for replay, so keep them few)."""

    def __init__(self, text: str):
        self.bar = st.progress(0.0, text=text)
        self.last = -1

    def __call__(self, done: int, total: int, msg: str = "") -> None:
        pct = int(100 * done / total) if total else 0
        if pct != self.last:
            self.last = pct
            self.bar.progress(min(pct, 100) / 100, text=msg or f"{pct}%")

    def close(self) -> None:
        self.bar.empty()


# Datasets hold tensors of up to hundreds of MB: cache_resource hands out the same object
# (no pickling per rerun). Callers must never modify it.
@st.cache_resource(max_entries=3, show_spinner=False)
def load_splits(key: str):
    from charlab.data import load_splits as _load

    cfg = from_dict(DataConfig, json.loads(key))
    bar = _Bar(f"Loading {cfg.source}…")
    try:
        return _load(cfg, progress=bar)
    finally:
        bar.close()


def splits_or_stop(cfg: Optional[DataConfig] = None):
    """The splits of the sidebar's source, or a clear message and st.stop()."""
    cfg = cfg or data_config()
    if not cfg.source:
        st.info("Choose a data source in the sidebar (enter a path or upload a zip).")
        st.stop()
    try:
        return load_splits(cfg_key(cfg))
    except CharlabError as e:
        error(e)
        st.stop()


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def predictor(ref: str, mtime: float):
    """A Predictor per checkpoint file; `mtime` makes a rewritten checkpoint load afresh."""
    import torch

    from charlab.predict import load_predictor

    # One image at a time is fastest on one thread, and the app shares the cores with its own
    # background training: on the 2-core sandbox at load 12 a prediction took 6 ms on 1 thread
    # and 45-575 ms on 2 (OpenMP workers spin-waiting on a descheduled partner).
    torch.set_num_threads(1)
    return load_predictor(ref)


def predictor_for(ref: str):
    return predictor(ref, _mtime(ref))


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


# ---------------------------------------------------------------- rendering

def error(e: BaseException) -> None:
    """A user-facing error in the page: the message, never a traceback."""
    st.error(str(e) or type(e).__name__, icon=":material/error:")


def crisp(img: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscale (H×W or H×W×C): 28-px characters stay sharp, not blurred."""
    return np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)


def scale_for(side: int, target_px: int = 112) -> int:
    return max(1, round(target_px / side))


def show_grid(images: np.ndarray, ncols: int, *, px: int = 84, caption: Optional[str] = None,
              gap_after: Optional[int] = None, max_width: int = 900) -> None:
    """Tile uint8 N×H×W (or N×1×H×W) images and show them crisp, tiles about `px` pixels high
    (less when the grid would be wider than `max_width`, e.g. wide digit-sum images)."""
    images = np.asarray(images)
    if images.ndim == 4:
        images = images[:, 0]
    from charlab.data.stats import tile

    g = tile(images, ncols, gap_after=gap_after)
    g = crisp(g, max(1, min(scale_for(images.shape[-2], px), max_width // g.shape[1])))
    # "content": its own size, but never wider than its column ("stretch" would blow up a small grid).
    # A grid narrower than its caption would be stretched to the caption's width (one 28-px image
    # blown up to 300 px), so a small grid gets its own pixels and the caption goes below it.
    if g.shape[1] < 400 and caption:
        st.image(g, width=int(g.shape[1]))
        st.caption(caption)
    else:
        st.image(g, caption=caption, width="content")


def images_row(images: list[np.ndarray], captions: list[str], px: int = 96) -> None:
    """Separate images with their own captions (galleries), each upscaled crisp."""
    if not images:
        return
    ims = [crisp(np.asarray(im), scale_for(np.asarray(im).shape[0], px)) for im in images]
    st.image(ims, caption=captions, width=px * ims[0].shape[1] // ims[0].shape[0])


def fmt_duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested config dict -> {"data.source": …, "model.name": …} for a readable diff."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and k != "kwargs":
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out



@st.cache_resource(max_entries=4, show_spinner=False)
def interpretation(ref: str, mtime: float, key: str, split: str):
    """Predictions of one model on one split (cached on disk by charlab too, so a second visit
    is instant). Shared across sessions; its internal example memo is the only thing it writes."""
    from charlab.interpret import Interpretation

    splits = load_splits(key)
    dataset = {"train": splits.train, "val": splits.val, "test": splits.test}[split]
    bar = _Bar(f"Predicting the {split} split…")
    try:
        return Interpretation.from_run(ref, dataset, split, predictor=predictor(ref, mtime), progress=bar)
    finally:
        bar.close()


@st.cache_resource(max_entries=4, show_spinner="Learning the model's look-alike classes…")
def lookalikes(ref: str, mtime: float):
    """The model's look-alike groups (charlab.lookalike.for_predictor: stored in the checkpoint,
    else learned from its own validation confusion, else the fallback list)."""
    from charlab.lookalike import for_predictor

    return for_predictor(predictor(ref, mtime))


def heatmap_overlay(image: np.ndarray, heat: Optional[np.ndarray] = None, *, title: str = "", size: int = 260):
    """A Plotly figure of a grey H×W image, optionally with a translucent saliency map over it.
    Heatmap cells keep the pixels crisp at any size."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Heatmap(z=image, colorscale="gray", showscale=False, zmin=0, zmax=255,
                               hoverinfo="skip"))
    if heat is not None:
        fig.add_trace(go.Heatmap(z=heat, colorscale="Jet", opacity=0.45, zmin=0, zmax=1, showscale=False,
                                 hovertemplate="saliency %{z:.2f}<extra></extra>"))
    fig.update_layout(width=size, height=size + (24 if title else 0), margin=dict(l=0, r=0, t=24 if title else 0, b=0),
                      title=dict(text=title, font_size=13 if size >= 160 else 12, x=0.5, xanchor="center"),
                      # explicit ranges and domain constraints on both axes: a chart narrower than `size`
                      # shrinks the square instead of cropping the image's sides
                      xaxis=dict(visible=False, constrain="domain", range=[-0.5, image.shape[1] - 0.5]),
                      yaxis=dict(visible=False, scaleanchor="x", constrain="domain",
                                 range=[image.shape[0] - 0.5, -0.5]))
    return fig
