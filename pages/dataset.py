"""Dataset page: class balance, samples per class, split sizes and skipped files of the sidebar's source."""
import numpy as np
import plotly.graph_objects as go
import streamlit as st

import ui
import ui_health
from charlab.errors import CharlabError

ui.require_app_frame()

st.title("Dataset")
src = ui.source()
if not src:
    st.info("Choose a data source in the sidebar: the built-in synthetic handwriting, a folder or zip "
            "with one subfolder per class, an MNIST/EMNIST folder, a CSV, or an uploaded zip.")
    st.stop()
st.caption(f"Source: `{src}`")

# counts and skipped files of the data as decoded: a listing would count files that do not decode
splits = ui.splits_or_stop()
if splits.labels.file:  # the Labels page's decisions (charlab.labels), which every loader applies
    lb = splits.labels
    st.caption(f"Label overrides: **{lb.overridden}** relabelled, **{lb.excluded}** excluded"
               + (f", **{len(lb.stale)}** not applied (image changed or gone)" if lb.stale else "")
               + f" · `{lb.file}` · [review them](/labels)")
classes, counts, skipped = splits.source_counts()
try:
    from charlab.data import class_stats

    stats = class_stats(counts, classes)
except CharlabError as e:
    ui.error(e)
    st.stop()

table = stats.table
c = st.columns(5)
c[0].metric("Classes", len(classes))
c[1].metric("Images", f"{stats.n_images:,}")
c[2].metric("Imbalance ratio", f"{stats.imbalance_ratio:.1f}×" if np.isfinite(stats.imbalance_ratio) else "∞",
            help="Largest class count divided by the smallest.")
c[3].metric("Median per class", f"{stats.median:g}")
c[4].metric("Skipped files", len(skipped), help="Files that could not be used; see the list below.")

if stats.min == stats.max:
    st.caption(f"Balanced: every class has {stats.min} images.")
else:
    small = table.sort_values(["count", "class"]).head(6)
    st.caption("Smallest classes: " + ", ".join(f"**{r['class']}** ({r['count']})" for _, r in small.iterrows())
               + f" · {int(table['below_median'].sum())} of {len(table)} classes are below the median.")

# ---- counts chart, coloured by how far each class is below the median
order = st.segmented_control("Sort by", ["count", "name"], default="count", required=True, key="ds_sort",
                             persist_state="session")
shown = table.sort_values(["count", "class"], ascending=[False, True]) if order == "count" else table
median = stats.median
below = (shown["deficit"].to_numpy() / median) if median > 0 else np.zeros(len(shown))  # 0 = at/above the median
fig = go.Figure(go.Bar(
    x=shown["class"].astype(str), y=shown["count"],
    marker=dict(color=below, colorscale=[[0, "#4C78A8"], [0.35, "#F2B701"], [1, "#E45756"]], cmin=0, cmax=1,
                showscale=bool(below.any()),  # a scale with nothing on it is noise on balanced data
                colorbar=dict(title="below<br>median", tickformat=".0%", thickness=12)),
    customdata=np.stack([below, shown["share"]], axis=1),
    hovertemplate="class %{x}: %{y} images<br>%{customdata[1]:.1%} of the data"
                  "<br>%{customdata[0]:.0%} below the median<extra></extra>",
))
fig.add_hline(y=median, line_dash="dot", line_color="grey", annotation_text=f"median {median:g}",
              annotation_position="top right")
fig.update_layout(height=340, margin=dict(l=10, r=10, t=30, b=10), xaxis=dict(type="category", title=None, dtick=1, tickfont_size=10 if len(shown) > 40 else 12),
                  yaxis=dict(title="images"), bargap=0.15)
st.plotly_chart(fig, key="ds_counts")

# ---- samples of one class | splits and skipped files
left, right = st.columns([1.4, 1], gap="large")  # the split metrics need ~120 px each at 1280 px
with left:
    st.subheader("Samples")
    train = splits.train
    names = list(train.classes)
    per_class = np.bincount(train.labels.numpy(), minlength=len(names))
    default = int(np.argmin(np.where(per_class > 0, per_class, per_class.max() + 1))) if len(names) else 0
    cls = st.selectbox("Class", range(len(names)), index=default, key="ds_class",
                       format_func=lambda i: f"{names[i]}  ({per_class[i]} training image{'' if per_class[i] == 1 else 's'})")
    idx = np.flatnonzero(train.labels.numpy() == cls)[:48]
    if len(idx):
        h, w = train.images.shape[-2:]
        ui.show_grid(train.images[idx].numpy(), ncols=max(2, 12 * h // w), px=56,
                     caption=f"{len(idx)} of {per_class[cls]} training image{'' if per_class[cls] == 1 else 's'} of class "
                             f"{names[cls]!r}, as the model sees them")
    else:
        st.info(f"No training images of class {names[cls]!r}.")
with right:
    st.subheader("Splits")
    s = st.columns([1.3, 1, 1])  # the train count has the most digits
    s[0].metric("Train", f"{len(splits.train):,}")
    s[1].metric("Validation", f"{len(splits.val):,}")
    s[2].metric("Test", f"{len(splits.test):,}" if splits.test is not None else "—")
    for note in splits.notes or []:
        st.caption(note)
    st.subheader("Skipped files")
    if skipped:
        st.dataframe([{"file": d.get("path", ""), "reason": d.get("reason", "")} for d in skipped],
                     hide_index=True, height=min(35 * len(skipped) + 38, 300))
    else:
        st.caption("None: every file was used.")

# ---- data health: leaks, duplicates, outliers, look-alike classes and the embedding map
ui_health.section(ui.data_config())
