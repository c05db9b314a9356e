"""Errors page: how a model fails on a split. Metrics, a clickable confusion matrix with the images
behind each cell, per-class scores, the most-confused pairs, the worst losses, saliency, and a link to the Labels page."""
import streamlit as st

import ui
import ui_errors
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

c1, c2, c3 = st.columns([2.2, 1.5, 1], vertical_alignment="bottom")
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
names = [n for n, ds in (("val", splits.val), ("test", splits.test), ("train", splits.train)) if ds is not None and len(ds)]
split = c3.selectbox("Split", names, key="err_split", format_func={"val": "validation", "test": "test",
                                                                     "train": "train"}.get)
restrict = st.toggle("Only the data's classes", key="err_restrict",
                     help="Restrict the model's predictions to the classes this data holds (e.g. a 62-class "
                          "model read as a digit model on MNIST): the other classes' probabilities are dropped.")
try:
    interp = ui.interpretation(ref, ui._mtime(ref), ui.cfg_key(cfg), split)
    lookalikes = ui.lookalikes(ref, ui._mtime(ref))
except CharlabError as e:
    ui.error(e)
    st.stop()
if restrict:
    interp = interp.restricted()

ui_errors.metrics_row(interp, lookalikes)
st.caption(f"`{src}` · {split} split · model `{interp.model_name}`")
train_ref = splits.train  # class examples come from the training images

# ---- confusion matrix | the cell's images: a fragment, so a click reruns this panel only
ui_errors.init_cell(interp, (ref, split, src, restrict))
ui_errors.confusion_panel(interp, train_ref)
pairs = interp.most_confused()

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
ui_errors.show_images(interp, tl, lambda r: f"{r.true}→{r.predicted} {r.prob_true:.2f}", px=72)

# ---- saliency
from charlab.saliency import SALIENCY  # noqa: E402
st.subheader("Where the model looked")
cell = interp.misclassified(*st.session_state["err_cell"], sort="confidence")  # as of the page's last full run
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

# ---- label problems: the Labels page (a reference audit, the diagnosis, the review grid and fixes)
st.subheader("Label problems")
st.caption("Whether the labels themselves are wrong (a swap, scrambled or complementary labels, scattered mistakes) is "
           "for the Labels page: a model that never saw the labels reads every training image, names the problem, "
           "and each fix goes to an override file every loader applies.")
st.page_link("pages/labels.py", label="Audit and fix the labels", icon=ui.ICONS["labels"])
