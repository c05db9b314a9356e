"""The Draw page's pieces: the verdict (a look-alike group when the twins share the probability),
the top-5 chart, reading an uploaded photo, and saving a drawing into the user's own dataset."""
from __future__ import annotations

import io
import re
import secrets
import time
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

import ui
# The canvas's side and pen widths: charlab's stroke renderings of real characters assume them.
from charlab.data.strokes import CANVAS_PX, PEN_PX, PEN_RANGE  # noqa: F401
from charlab.errors import CharlabError

BLOCK_PX = 300  # the canvas's block: the canvas and its toolbar, pen slider and Clear button beside
INK_LEVEL = 40  # an RGB channel above this counts as ink (white pen on a black background)
UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"]


def verdict(ex, classes, lookalikes) -> str:
    """Markdown: "Looks like **c or C** 93%, c 51% · C 42%" or "Looks like **7** (96% sure)"."""
    from charlab.lookalike import grouped_top

    g = grouped_top(ex.probs, classes, lookalikes)
    grey = "<span style='color:grey;font-size:0.8em'>{}</span>"
    if len(g.split) == 1:
        return f"### Looks like **{g.label}** &nbsp; " + grey.format(f"({g.prob:.0%} sure)")
    split = " · ".join(f"{c} {p:.0%}" for c, p in g.split)
    return (f"### Looks like **{g.label}**: {g.prob:.0%} &nbsp; " + grey.format(f"({split})") +
            "\n\nThese look alike to the model (learned from its confusions): a lone glyph cannot tell them "
            "apart by shape, only by size and context.")


def top_chart(top) -> go.Figure:
    fig = go.Figure(go.Bar(x=[q for _, q in top][::-1], y=[f"{c} " for c, _ in top][::-1], orientation="h",
                           marker_color=["#4C78A8"] * (len(top) - 1) + ["#E45756"],
                           text=[f"{q:.1%}" for _, q in top][::-1], textposition="auto",
                           hovertemplate="%{y}: %{x:.2%}<extra></extra>"))
    fig.update_layout(height=230, margin=dict(l=10, r=10, t=10, b=10), xaxis=dict(range=[0, 1], tickformat=".0%"),
                      yaxis=dict(type="category", tickfont_size=16))
    return fig


def canvas_image(canvas):
    """The canvas's RGBA -> an RGB PIL image, or None while it holds no ink."""
    from PIL import Image

    rgba = canvas.image_data
    if rgba is None or rgba.ndim != 3 or int(rgba[..., :3].max()) <= INK_LEVEL:
        return None
    return Image.fromarray(np.ascontiguousarray(rgba[..., :3]), "RGB")


def side_note(ex, pred, mode: str):
    """A caption for a side-input model (charlab.data.geometry): what it read besides the pixels;
    None for an image-only model."""
    kind = pred.side_inputs
    if not kind:
        return None
    if ex.side is None:  # an optional side vector, left out for a photo (Predictor.explain(page=False))
        return ("A photo has no fixed sheet, so its framing says nothing of the writing's size: the model "
                "reads its pixels alone (on the canvas it also reads the ink's size and place).")
    from charlab.data.geometry import describe

    if mode == "draw":
        return f"Also read: the ink's size and place on the canvas, {describe(kind, ex.side, 'canvas')}."
    return (f"Also read: the ink's size and place in the photo, {describe(kind, ex.side, 'photo')} "
            f"(a photo has no fixed sheet: its framing changes this).")


def upload_image(up):
    """An uploaded file -> an upright, evenly lit PIL image; a clear message (and None) for a bad file."""
    from charlab.photo import open_photo

    try:
        return open_photo(up.getvalue(), name=repr(up.name))
    except CharlabError as e:
        ui.error(e)
        return None


def save_form(drawing, best: str) -> None:
    """Label the drawing and add it to the user's own folder source ("My drawings")."""
    st.markdown("**Add this drawing to my dataset**")
    with st.form("draw_save", border=False, clear_on_submit=True):  # stacked: the column can be narrow
        label = st.text_input("Its true label", max_chars=8, placeholder=best, key="draw_label")
        save = st.form_submit_button("Save drawing", icon=":material/save:")
    if save:
        label = (label or "").strip()
        if not label or not re.fullmatch(r"[A-Za-z0-9_-]+", label):
            st.error("Type the character the drawing shows (letters, digits, - or _), then save.")
        else:
            from charlab.io import atomic_write_bytes

            buf = io.BytesIO()
            drawing.save(buf, format="PNG")
            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = Path(st.session_state["drawings_dir"]) / label / f"{stamp}-{secrets.token_hex(3)}.png"
            try:
                atomic_write_bytes(path, buf.getvalue())
            except CharlabError as e:
                ui.error(e)
            else:
                n = len(list(path.parent.glob("*.png")))
                st.session_state["draw_saved"] = (f"Saved as {label!r} ({n} drawing{'s' * (n != 1)} of it). Choose "
                                                  "**My drawings** as the source in the sidebar to browse or train on them.")
                st.rerun()  # so the sidebar offers "My drawings" right away
    if msg := st.session_state.pop("draw_saved", None):
        st.success(msg)
