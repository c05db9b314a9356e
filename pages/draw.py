"""Draw page: draw a character with the mouse, or upload a photo or scan of one; the model's
top-5 (look-alike twins named together), the S×S image it actually sees and where it looked.
A drawing can be saved, labelled, into a folder source of your own ("My drawings" in the sidebar)."""
import time

import streamlit as st

import ui
import ui_draw
import ui_export
from charlab.errors import CharlabError

ui.require_app_frame()

st.title("Draw")
choices = ui.model_choices()
if not choices:
    st.info("No model yet: train one on the **Train** page, or put a checkpoint in checkpoints/.")
    st.stop()
refs, labels = [r for r, _ in choices], dict(choices)
active = st.session_state.get("model_ref")

from streamlit_drawable_canvas import st_canvas  # noqa: E402  (registers its component at import)

# The canvas has a fixed pixel size, so its block has a fixed width too: a share of a column would
# be narrower than the canvas at 1280 px with the sidebar open, and strokes would get lost. The
# results take the rest of the row (and wrap below the canvas on a narrower window).
row = st.container(horizontal=True, gap="large")
left, results = row.container(width=ui_draw.BLOCK_PX), row.container(width="stretch")
mid, right = results.columns([0.78, 1.22], gap="medium")
with left:
    ref = st.selectbox("Model", refs, index=refs.index(active) if active in refs else 0,
                       format_func=labels.get, key="draw_model")
    ui_export.export_button(ref, "draw_export")
    mode = st.segmented_control("Input", ["draw", "upload"], default="draw", required=True, key="draw_mode",
                                format_func={"draw": "Draw", "upload": "Upload a photo"}.get,
                                label_visibility="collapsed")
    st.session_state.setdefault("draw_n", 0)
    image = None
    if mode == "draw":
        pen = st.session_state.get("draw_pen", ui_draw.PEN_PX)
        st.space("small")  # the canvas's toolbar floats above its top edge: keep it off the controls
        # A white pen on black: what the model's data looks like. With a background colour every pixel's
        # alpha is 255, so the strokes are read from RGB.
        canvas = st_canvas(stroke_width=pen, stroke_color="#FFFFFF", background_color="#000000",
                           height=ui_draw.CANVAS_PX, width=ui_draw.CANVAS_PX, drawing_mode="freedraw",
                           return_image_data=True, key=f"draw_canvas_{st.session_state['draw_n']}")
        pen_col, clear_col = st.columns([1.6, 1], vertical_alignment="bottom")
        pen_col.slider("Pen width", *ui_draw.PEN_RANGE, ui_draw.PEN_PX, key="draw_pen")
        if clear_col.button("Clear", icon=":material/ink_eraser:", key="draw_clear", width="stretch"):
            st.session_state["draw_n"] += 1  # a fresh key remounts an empty canvas
            st.rerun()
        image = ui_draw.canvas_image(canvas)
        hint = ("Draw a character (a digit or a letter) on the black square. The prediction updates after "
                "every stroke.")
    else:
        up = st.file_uploader("A photo or scan of one character", type=ui_draw.UPLOAD_TYPES, key="draw_upload",
                              help="Any size, dark ink on light paper or the reverse; phone photos are turned "
                                   "upright and their lighting evened out.")
        if up is not None:
            image = ui_draw.upload_image(up)
            if image is not None:
                st.image(image, caption=f"{up.name} ({image.width}×{image.height} after shrinking)", width=220)
        hint = "Upload a PNG or JPEG of one handwritten character."

if image is None:
    with mid:
        st.info(hint)
    st.stop()

try:
    pred = ui.predictor_for(ref)
    t0 = time.perf_counter()
    ex = pred.explain(image, top_k=5, page=mode == "draw")  # one preparation and forward pass: top-5, Grad-CAM
    ms = (time.perf_counter() - t0) * 1000
    lookalikes = ui.lookalikes(ref, ui._mtime(ref))
except CharlabError as e:
    ui.error(e)
    st.stop()

with mid:
    st.markdown(ui_draw.verdict(ex, pred.classes, lookalikes), unsafe_allow_html=True)
    st.plotly_chart(ui_draw.top_chart(ex.top), key="draw_top5")
    st.caption(f"Top-5 of {len(pred.classes)} classes · {ms:.0f} ms on the server (prediction + Grad-CAM)")
    if (note := ui_draw.side_note(ex, pred, mode)) is not None:
        st.caption(note)
with right:
    s_h, s_w = ex.image.shape
    best = ex.top[0][0]
    imgs = st.container(horizontal=True, gap="small")  # side by side, or one under the other when narrow
    imgs.plotly_chart(ui.heatmap_overlay(ex.image, title=f"input {s_h}×{s_w}", size=125), width="content",
                      key="draw_seen", config={"displayModeBar": False})
    imgs.plotly_chart(ui.heatmap_overlay(ex.image, ex.cam, title=f"Grad-CAM ({best})", size=125), width="content",
                      key="draw_cam", config={"displayModeBar": False})
    if mode == "draw":
        ui_draw.save_form(image, best)
