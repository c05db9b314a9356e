"""Errors page: how a model fails on a split. Metrics, a clickable confusion matrix with the images
behind each cell, per-class scores, the most-confused pairs, the worst losses, saliency and label suspects."""
import numpy as np
import plotly.graph_objects as go
import streamlit as st

import ui
from charlab.errors import CharlabError

ui.require_app_frame()

st.title("Errors")
choices = ui.model_choices()
if not choices:
    st.info("No model to inspect yet. Train one on the **Train** page (or put a checkpoint in checkpoints/).")
    st.page_link("pages/train.py", label="Go to Train", icon=ui.ICONS["train"])
    st.stop()
refs, labels = [r for r, _ in choices], dict(choices)
active = st.session_state.get("model_ref")

c1, c2, c3 = st.columns([2.2, 1.4, 1])
ref = c1.selectbox("Model", refs, index=refs.index(active) if active in refs else 0, format_func=labels.get,
                   key="err_model")
try:
    pred = ui.predictor_for(ref)
except CharlabError as e:
    ui.error(e)
    st.stop()
own = pred.config.data.source
where = c2.radio("Data", ["own", "sidebar"], horizontal=True, key="err_data",
                 format_func={"own": "what it trained on", "sidebar": "the sidebar's source"}.get,
                 help=f"It trained on `{own}`. Either way the images get the model's own preprocessing.")
src = own if where == "own" else ui.source()
cfg = pred.data_config_for(src)
splits = ui.splits_or_stop(cfg)
names = ["val", "test", "train"] if splits.test is not None else ["val", "train"]
split = c3.selectbox("Split", names, key="err_split", format_func={"val": "validation", "test": "test",
                                                                     "train": "train"}.get)
if split == "val" and len(splits.val) == 0:
    st.warning("This source has no validation images; pick another split.")
    st.stop()
try:
    interp = ui.interpretation(ref, ui._mtime(ref), ui.cfg_key(cfg), split)
except CharlabError as e:
    ui.error(e)
    st.stop()

s = interp.summary()
m = st.columns(5)
m[0].metric("Accuracy", f"{s['accuracy']:.1%}")
m[1].metric("Macro-F1", f"{s['macro_f1']:.1%}", help="Mean of the per-class F1 scores.")
m[2].metric("Top-5 accuracy", f"{s['top5']:.1%}")
m[3].metric("Images", f"{s['n']:,}")
m[4].metric("Errors", f"{s['errors']:,}")
st.caption(f"`{src}` · {split} split · model `{interp.model_name}`")
for note in s["notes"]:
    st.caption(":material/info: " + note)

train_ref = splits.train  # class examples come from the training images


def show_images(rows, caption_fn, px=84, limit=40) -> None:
    rows = rows.head(limit)
    ui.images_row([interp.image(i) for i in rows["index"]], [caption_fn(r) for r in rows.itertuples()], px=px)


# ---- confusion matrix | the cell's images
pairs = interp.most_confused()
cm = interp.confusion_matrix()
norm = interp.confusion_matrix(normalize="true")
C = interp.num_classes


def select_cell_from_chart() -> None:
    pts = st.session_state["err_cm"].selection.points
    if pts:  # x = predicted class, y = true class (category names; customdata comes back as a dict)
        t, p = interp.class_index(str(pts[0]["y"])), interp.class_index(str(pts[0]["x"]))
        st.session_state["err_cell"] = (t, p)
        if t != p:  # the pair list then shows the clicked cell (every non-empty error cell is in it)
            st.session_state["err_pair"] = (t, p)


def select_cell_from_list() -> None:
    st.session_state["err_cell"] = st.session_state["err_pair"]


pair_opts = [(int(r.true_idx), int(r.pred_idx)) for r in pairs.itertuples()]
if "err_cell" not in st.session_state or st.session_state.get("err_cell_ref") != (ref, split, src):
    st.session_state["err_cell"] = pair_opts[0] if pair_opts else (0, 0)
    st.session_state["err_cell_ref"] = (ref, split, src)
    if pair_opts:  # the pair list follows: its old value belongs to another model or split
        st.session_state["err_pair"] = pair_opts[0]
t_sel, p_sel = st.session_state["err_cell"]

left, right = st.columns([1.45, 1], gap="large")
with left:
    st.subheader("Confusion matrix")
    st.caption("Rows: true class · columns: predicted. Click a cell to see its images.")
    t_idx, p_idx = np.nonzero(cm)  # draw only non-empty cells: 62×62 empty squares are just noise
    diag = t_idx == p_idx
    side = int(min(max(14 * C + 90, 380), 600))  # px: cells of ~14 px, 8.5 px at 62 classes
    msize = max(3.0, (side - 70) / max(C, 1))  # one marker fills one cell: plot area / classes
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
    ax = dict(type="category", categoryorder="array", categoryarray=interp.classes, tickfont_size=9 if C > 40 else 11,
              showgrid=False, zeroline=False, dtick=1, range=[-0.5, C - 0.5])
    fig.update_layout(width=side, height=side, margin=dict(l=55, r=15, t=10, b=55), showlegend=False,
                      xaxis=dict(ax, title="predicted", constrain="domain"),
                      yaxis=dict(ax, title="true", autorange="reversed", scaleanchor="x", constrain="domain"),
                      plot_bgcolor="#fafafa", clickmode="event+select", dragmode=False)
    st.plotly_chart(fig, key="err_cm", on_select=select_cell_from_chart, selection_mode="points",
                    width=side, height=side, config={"displayModeBar": False})
with right:
    if pair_opts:
        if st.session_state.get("err_pair") not in pair_opts:
            st.session_state["err_pair"] = (t_sel, p_sel) if (t_sel, p_sel) in pair_opts else pair_opts[0]
        st.selectbox("Or pick a confused pair", pair_opts, key="err_pair", on_change=select_cell_from_list,
                     format_func=lambda tp: f"true {interp.classes[tp[0]]} → predicted {interp.classes[tp[1]]} "
                                            f"({cm[tp]} images)")
    tn, pn = interp.classes[t_sel], interp.classes[p_sel]
    st.subheader(f"True {tn!r} → predicted {pn!r}")
    cell = interp.misclassified(t_sel, p_sel, sort="confidence")
    if len(cell) == 0:
        st.caption("No image in this cell.")
    else:
        what = "correct" if t_sel == p_sel else "misclassified"
        st.caption(f"{len(cell)} {what} image(s), most confident first (p = the model's probability for {pn!r}).")
        show_images(cell, lambda r: f"p={r.prob_pred:.2f}", px=72)
    if t_sel != p_sel:
        st.caption("What the classes usually look like (training images the model gets right most confidently):")
        ex = [(interp.class_example(c, reference_dataset=train_ref), f"a typical {interp.classes[c]!r}")
              for c in (t_sel, p_sel)]
        ex = [(im, cap) for im, cap in ex if im is not None]
        ui.images_row([im for im, _ in ex], [cap for _, cap in ex], px=96)

st.divider()
# ---- per class | most confused
a, b = st.columns([1.6, 1], gap="large")
with a:
    st.subheader("Per class")
    pc = interp.per_class().sort_values(["f1", "class"])[["class", "f1", "precision", "recall", "support"]]
    bar = dict(format="percent", min_value=0, max_value=1, width="small")
    st.dataframe(pc, hide_index=True, height=min(35 * (len(pc) + 1) + 3, 320), column_config={
        "class": st.column_config.TextColumn(width="small"), "support": st.column_config.NumberColumn(width="small"),
        "precision": st.column_config.ProgressColumn(**bar), "recall": st.column_config.ProgressColumn(**bar),
        "f1": st.column_config.ProgressColumn("F1", **bar)})
    st.caption("Worst F1 first.")
with b:
    st.subheader("Most confused pairs")
    if len(pairs):
        top_pairs = pairs[["true", "predicted", "count"]].head(20)
        st.dataframe(top_pairs, hide_index=True, height=min(35 * (len(top_pairs) + 1) + 3, 320))
    else:
        st.caption("No confusion at all on this split.")

# ---- top losses
st.subheader("Top losses")
tl = interp.top_losses(24, errors_only=False)
st.caption("The images the model is most wrong about: given label → prediction, and the probability it gave the label.")
show_images(tl, lambda r: f"{r.true}→{r.predicted} {r.prob_true:.2f}", px=72)

# ---- saliency
from charlab.saliency import SALIENCY  # noqa: E402
st.subheader("Where the model looked")
candidates = list(dict.fromkeys(list(cell["index"].head(12)) + list(tl["index"])))
sc1, sc2 = st.columns([1, 2.5], gap="large")
with sc1:
    i = st.selectbox("Example", candidates, key="err_sal_idx",
                     format_func=lambda k: f"#{k}: {interp.classes[interp.targets[k]]} → {interp.classes[interp.preds[k]]}")
    target = st.radio("Explain the class", ["predicted", "true"], horizontal=True, key="err_sal_class")
    cls = int(interp.preds[i] if target == "predicted" else interp.targets[i])
with sc2:
    try:
        img = interp.image(i)
        g1, *gs = st.columns(1 + len(SALIENCY))
        g1.plotly_chart(ui.heatmap_overlay(img, title="image"), width="content", key="err_sal_img")
        for g, kind in zip(gs, SALIENCY.names()):
            g.plotly_chart(ui.heatmap_overlay(img, interp.saliency(i, kind, cls),
                                              title=f"{SALIENCY.get(kind).title} for {interp.classes[cls]!r}"),
                           width="content", key=f"err_sal_{kind}")
    except CharlabError as e:
        ui.error(e)

# ---- label suspects
st.subheader("Label-issue suspects")
from charlab.suspects import find_suspects  # noqa: E402

paths = getattr(interp.dataset, "paths", None)
rep = find_suspects(interp.probs, interp.targets, interp.classes, paths=paths, in_sample=split == "train")
k1, k2 = st.columns([1, 3])
k1.metric("Estimated wrong labels", f"{rep.share:.1%}", help="Share of the split whose given label the model "
          "confidently contradicts (calibrated confident joint).")
k1.metric("Suspects", len(rep.suspects))
with k2:
    st.caption(rep.note + (". For honest scores on the training data use k-fold: "
                           f"`python -m charlab suspects --source {own} --folds 3`." if split == "train" else "."))
    if len(rep.suspects):
        top = rep.suspects.head(16)
        ui.images_row([interp.image(j) for j in top["index"]],
                      [f"given {g} · likely {l_}" for g, l_ in zip(top["given"], top["likely"])], px=72)
if len(rep.pairs):
    st.caption("The (given → likely) pairs that dominate; a systematic swap of two classes shows up as one line:")
    st.dataframe(rep.pairs.head(10), hide_index=True)
