"""The Errors page's panels: the metrics row and the clickable confusion matrix with the images
behind the chosen cell. The matrix panel is an `st.fragment`, so a click on a cell reruns that
panel alone (not the per-class tables, saliency or label suspects below it)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

import ui

ORDERS = {"class": "0–9 A–Z a–z", "twins": "Aa Bb Cc (twins together)"}


def show_images(interp, rows, caption_fn, px: int = 84, limit: int = 40) -> None:
    rows = rows.head(limit)
    ui.images_row([interp.image(i) for i in rows["index"]], [caption_fn(r) for r in rows.itertuples()], px=px)


def metrics_row(interp, lookalikes) -> None:
    s = interp.summary()
    m = st.columns(6)
    m[0].metric("Accuracy", f"{s['accuracy']:.1%}", help="Top-1: the most likely class is the given label.")
    m[1].metric("Case-insensitive", f"{interp.case_insensitive_accuracy(lookalikes):.1%}",
                help="Accuracy when a prediction inside the label's look-alike group (listed below the "
                     "metrics) counts as right: a lone, cropped glyph cannot tell c from C.")
    m[2].metric("Macro-F1", f"{s['macro_f1']:.1%}", help=f"Mean of the per-class F1 over the {s['classes_present']} "
                "classes the data holds; predictions into other classes count as errors.")
    m[3].metric("Top-5 accuracy", f"{s['top5']:.1%}")
    m[4].metric("Images", f"{s['n']:,}")
    m[5].metric("Errors", f"{s['errors']:,}", help=f"{s['absent_predictions']:,} of them predicted a class the "
                "data does not hold." if s["absent_predictions"] else None)
    st.caption(f"Look-alike groups: {lookalikes.describe()} — {lookalikes.source}.")
    for note in s["notes"]:
        st.caption("ⓘ " + note)


def init_cell(interp, scope) -> None:
    """The shown cell starts at the most confused pair whenever model, data or split change."""
    pairs = interp.most_confused()
    opts = [(int(r.true_idx), int(r.pred_idx)) for r in pairs.itertuples()]
    ss = st.session_state
    if "err_cell" not in ss or ss.get("err_cell_ref") != scope:
        ss["err_cell"] = opts[0] if opts else (0, 0)
        ss["err_cell_ref"] = scope
        if opts:  # the pair list follows: its old value belongs to another model or split
            ss["err_pair"] = opts[0]


def _select_from_chart(interp) -> None:
    pts = st.session_state["err_cm"].selection.points
    if pts:  # x = predicted class, y = true class (category names)
        t, p = interp.class_index(str(pts[0]["y"])), interp.class_index(str(pts[0]["x"]))
        st.session_state["err_cell"] = (t, p)
        if t != p:  # the pair list then shows the clicked cell (every non-empty error cell is in it)
            st.session_state["err_pair"] = (t, p)


def _select_from_list() -> None:
    st.session_state["err_cell"] = st.session_state["err_pair"]


def matrix_figure(interp, order: str, height: int) -> go.Figure:
    """The confusion matrix as square scatter markers (Plotly heatmap cells do not report
    selections in Streamlit), only non-empty cells, in class order or with case twins together."""
    cm, norm, C = interp.confusion_matrix(), interp.confusion_matrix(normalize="true"), interp.num_classes
    from charlab.lookalike import twin_order

    axis_order = [interp.classes[k] for k in (twin_order(interp.classes) if order == "twins" else range(C))]
    t_idx, p_idx = np.nonzero(cm)  # 62×62 empty squares are just noise
    diag = t_idx == p_idx
    msize = max(3.0, (height - 80) / max(C, 1) - 0.5)  # one marker fills one cell: plot area / classes
    fig = go.Figure()
    for mask, scale, name in ((diag, "Blues", "correct"), (~diag, "Reds", "errors")):
        t, p = t_idx[mask], p_idx[mask]
        z = norm[t, p]
        fig.add_trace(go.Scatter(
            x=[interp.classes[j] for j in p], y=[interp.classes[i] for i in t], mode="markers", name=name,
            marker=dict(symbol="square", size=msize, color=z, colorscale=scale, cmin=0,
                        cmax=1 if name == "correct" else max(float(z.max()) if len(z) else 0.0, 0.05),
                        line=dict(width=0)),
            unselected=dict(marker=dict(opacity=0.6)),  # Plotly's default fades the rest to 0.2
            customdata=np.stack([t, p, cm[t, p], z], axis=1) if len(t) else None,
            hovertemplate="true %{y} → predicted %{x}<br>%{customdata[2]} images (%{customdata[3]:.0%} of %{y})"
                          "<extra></extra>"))
    ax = dict(type="category", categoryorder="array", categoryarray=axis_order, tickfont_size=11 if C > 40 else 12,
              showgrid=False, zeroline=False, dtick=1, range=[-0.5, C - 0.5], ticks="", tickangle=0)
    fig.update_layout(height=height, margin=dict(l=50, r=10, t=10, b=50), showlegend=False,
                      xaxis=dict(ax, title="predicted", constrain="domain"),
                      yaxis=dict(ax, title="true", autorange="reversed", scaleanchor="x", constrain="domain"),
                      plot_bgcolor="#fafafa", clickmode="event+select", dragmode=False)
    return fig


@st.fragment
def confusion_panel(interp, train_ref) -> None:
    """Matrix | the chosen cell's images. Many classes: the matrix gets the full width (13-px cells
    keep 62 tick labels legible) and the cell's images go below it."""
    C = interp.num_classes
    many = C > 30
    height = int(min(max(13 * C + 90, 380), 900))
    if many:
        left, right = st.container(), st.container()
    else:
        left, right = st.columns([1.45, 1], gap="large")
    with left:
        st.subheader("Confusion matrix")
        order = st.segmented_control("Class order", list(ORDERS), format_func=ORDERS.get, default="class",
                                     key="err_order", required=True,
                                     help="Case twins side by side: c/C confusions become 2×2 blocks on the diagonal.")
        st.caption("Rows: true class · columns: predicted. Click a cell to see its images.")
        st.plotly_chart(matrix_figure(interp, order, height), key="err_cm", selection_mode="points",
                        on_select=lambda: _select_from_chart(interp), height=height,
                        width="stretch" if many else height, config={"displayModeBar": False})
    with right, st.container(key="err_cell_box"):
        cell_gallery(interp, train_ref)


def cell_gallery(interp, train_ref) -> None:
    pairs = interp.most_confused()
    cm = interp.confusion_matrix()
    opts = [(int(r.true_idx), int(r.pred_idx)) for r in pairs.itertuples()]
    t_sel, p_sel = st.session_state["err_cell"]
    if opts:
        if st.session_state.get("err_pair") not in opts:
            st.session_state["err_pair"] = (t_sel, p_sel) if (t_sel, p_sel) in opts else opts[0]
        st.selectbox("Or pick a confused pair", opts, key="err_pair", on_change=_select_from_list,
                     format_func=lambda tp: f"true {interp.classes[tp[0]]} → predicted {interp.classes[tp[1]]} "
                                            f"({cm[tp]} images)")
    tn, pn = interp.classes[t_sel], interp.classes[p_sel]
    st.subheader(f"True {tn!r} → predicted {pn!r}")
    cell = interp.misclassified(t_sel, p_sel, sort="confidence")
    if len(cell) == 0:
        st.caption("No image in this cell.")
        return
    what = "correct" if t_sel == p_sel else "misclassified"
    st.caption(f"{len(cell)} {what} image(s), most confident first (p = the model's probability for {pn!r}).")
    show_images(interp, cell, lambda r: f"p={r.prob_pred:.2f}", px=72)
    if t_sel != p_sel:
        st.caption("What the classes usually look like (training images the model gets right most confidently):")
        ex = [(interp.class_example(c, reference_dataset=train_ref), f"a typical {interp.classes[c]!r}")
              for c in (t_sel, p_sel)]
        ex = [(im, cap) for im, cap in ex if im is not None]
        ui.images_row([im for im, _ in ex], [cap for _, cap in ex], px=96)
