"""Draw page: draw a character with the mouse; after every stroke the model's top-5, the S×S
image it actually sees and where it looked. A drawing can be saved, labelled, into a folder
source of your own ("My drawings" in the sidebar)."""
import io
import re
import secrets
import time
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

import ui
from charlab.errors import CharlabError

ui.require_app_frame()

CANVAS_PX = 280
INK_LEVEL = 40  # an RGB channel above this counts as ink (white pen on a black background)

st.title("Draw")
choices = ui.model_choices()
if not choices:
    st.info("No model yet: train one on the **Train** page, or put a checkpoint in checkpoints/.")
    st.stop()
refs, labels = [r for r, _ in choices], dict(choices)
active = st.session_state.get("model_ref")

from streamlit_drawable_canvas import st_canvas  # noqa: E402  (registers its component at import)

left, mid, right = st.columns([1.05, 1.2, 1.3], gap="large")
with left:
    ref = st.selectbox("Model", refs, index=refs.index(active) if active in refs else 0,
                       format_func=labels.get, key="draw_model")
    pen = st.session_state.get("draw_pen", 20)
    st.session_state.setdefault("draw_n", 0)
    st.space("medium")  # the canvas's toolbar floats above its top edge: keep it off the selectbox
    # A white pen on black: what the model's data looks like. With a background colour every pixel's
    # alpha is 255, so the strokes are read from RGB.
    canvas = st_canvas(stroke_width=pen, stroke_color="#FFFFFF", background_color="#000000",
                       height=CANVAS_PX, width=CANVAS_PX, drawing_mode="freedraw", return_image_data=True,
                       key=f"draw_canvas_{st.session_state['draw_n']}")
    pen_col, clear_col = st.columns([1.5, 1], vertical_alignment="bottom")
    pen_col.slider("Pen width", 6, 40, 20, key="draw_pen")
    if clear_col.button("Clear", icon=":material/ink_eraser:", key="draw_clear"):
        st.session_state["draw_n"] += 1  # a fresh key remounts an empty canvas
        st.rerun()

rgba = canvas.image_data
has_ink = rgba is not None and rgba.ndim == 3 and int(rgba[..., :3].max()) > INK_LEVEL
if not has_ink:
    with mid:
        st.info("Draw a character (a digit or a letter) on the black square. The prediction updates after "
                "every stroke.")
    st.stop()

from PIL import Image  # noqa: E402

drawing = Image.fromarray(np.ascontiguousarray(rgba[..., :3]), "RGB")
try:
    pred = ui.predictor_for(ref)
    t0 = time.perf_counter()
    top = pred.predict_images([drawing], top_k=5)[0]
    seen = np.array(pred.prepare(drawing))  # a writable copy (torch warns on read-only arrays)
    cam = pred.saliency(seen, "grad_cam")
    ms = (time.perf_counter() - t0) * 1000
except CharlabError as e:
    ui.error(e)
    st.stop()

with mid:
    best, p = top[0]
    st.markdown(f"### Looks like **{best}** &nbsp; <span style='color:grey;font-size:0.8em'>({p:.0%} sure)</span>",
                unsafe_allow_html=True)
    fig = go.Figure(go.Bar(x=[q for _, q in top][::-1], y=[f"{c} " for c, _ in top][::-1], orientation="h",
                           marker_color=["#4C78A8"] * (len(top) - 1) + ["#E45756"],
                           text=[f"{q:.1%}" for _, q in top][::-1], textposition="auto",
                           hovertemplate="%{y}: %{x:.2%}<extra></extra>"))
    fig.update_layout(height=250, margin=dict(l=10, r=10, t=10, b=10), xaxis=dict(range=[0, 1], tickformat=".0%"),
                      yaxis=dict(type="category", tickfont_size=16))
    st.plotly_chart(fig, key="draw_top5")
    st.caption(f"Top-5 of {len(pred.classes)} classes · {ms:.0f} ms on the server (prediction + Grad-CAM)")
with right:
    s = seen.shape[0]
    g1, g2 = st.columns(2)
    g1.plotly_chart(ui.heatmap_overlay(seen, title=f"model input {s}×{s}", size=190), width="content",
                    key="draw_seen")
    g2.plotly_chart(ui.heatmap_overlay(seen, cam, title=f"Grad-CAM ({best})", size=190), width="content",
                    key="draw_cam")

    st.markdown("**Add this drawing to my dataset**")
    with st.form("draw_save", border=False, clear_on_submit=True):
        f1, f2 = st.columns([1, 1], vertical_alignment="bottom")
        label = f1.text_input("Its true label", max_chars=8, placeholder=best, key="draw_label")
        save = f2.form_submit_button("Save drawing", icon=":material/save:")
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
        st.success(msg, icon=":material/check_circle:")
