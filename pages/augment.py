"""Augmentation page: what the model will see. A preset or per-op sliders, originals beside K
augmented variants (stable for a seed), and the effect of class balancing on the counts."""
import dataclasses

import numpy as np
import plotly.graph_objects as go
import streamlit as st

import ui
from charlab.config import to_dict
from charlab.errors import CharlabError

ui.require_app_frame()

st.title("Augmentation")
st.caption("Augmentation runs on each training batch right before the forward pass. Too much of it makes "
           "training images unlike real ones, and accuracy drops — check that the characters stay readable.")

from charlab.augment import OPS, get_preset, list_presets, preview  # noqa: E402  (torch: after the title shows)

# Slider bounds and step per AugmentConfig field (the ops themselves come from charlab.augment.OPS).
BOUNDS = {
    "rotate": (-45.0, 45.0, 1.0), "shear_x": (-0.6, 0.6, 0.05), "shear_y": (-0.6, 0.6, 0.05),
    "scale": (0.5, 1.5, 0.05), "shift": (0.0, 0.3, 0.01), "perspective": (0.0, 0.3, 0.01),
    "elastic_alpha": (0.0, 4.0, 0.1), "elastic_sigma": (1.0, 8.0, 0.5), "stroke": (-2.0, 3.0, 0.25),
    "blur_sigma": (0.0, 2.0, 0.1), "noise_std": (0.0, 0.3, 0.01), "erase_frac": (0.0, 0.4, 0.01),
}

splits = ui.splits_or_stop()
train = splits.train

ctl, view = st.columns([1, 2.4], gap="large")
with ctl:
    presets = list_presets()
    preset = st.selectbox("Preset", presets, index=presets.index("light") if "light" in presets else 0, key="aug_preset",
                          persist_state="session")
    base = get_preset(preset)
    values = {}
    edit = st.toggle("Adjust each augmentation", key="aug_edit")
    if edit:
        for op in OPS:
            on = getattr(base, op.p_field) > 0
            with st.expander(op.name.capitalize() + ("  ·  on" if on else ""), expanded=False):
                st.caption(op.help)
                for f in op.fields:
                    lo, hi, step = BOUNDS[f]
                    v = getattr(base, f)
                    v = tuple(float(x) for x in v) if isinstance(v, (tuple, list)) else float(v)
                    values[f] = st.slider(f.replace("_", " "), lo, hi, v, step, key=f"aug_{preset}_{f}")
                values[op.p_field] = st.slider("probability", 0.0, 1.0, float(getattr(base, op.p_field)), 0.05,
                                               key=f"aug_{preset}_{op.p_field}")
    cfg = dataclasses.replace(base, **values)
    if cfg != base:
        cfg = dataclasses.replace(cfg, preset="custom")
    # The Train page offers this exact config as "custom".
    st.session_state["aug_custom"] = to_dict(cfg) if cfg.preset == "custom" else None

    c1, c2 = st.container(), st.container()  # stacked: side by side, "Re-roll" is cut at 1280 px
    st.session_state.setdefault("aug_seed", 0)
    if c2.button("Re-roll", icon=":material/casino:", key="aug_reroll", width="stretch"):
        st.session_state["aug_seed"] = int(st.session_state["aug_seed"]) + 1
    seed = c1.number_input("Seed", 0, 10**9, step=1, key="aug_seed")
    k = st.slider("Variants per image", 2, 10, 7, key="aug_k")
    n = st.slider("Images", 2, 12, 6, key="aug_n")

with view:
    # Originals: one image from each of n classes spread over the class list.
    labels = train.labels.numpy()
    present = np.flatnonzero(np.bincount(labels, minlength=len(train.classes)))
    pick_classes = present[np.linspace(0, len(present) - 1, min(n, len(present))).round().astype(int)]
    first = [int(np.flatnonzero(labels == c)[0]) for c in pick_classes]
    originals = train.images[first]  # n×1×S×S uint8
    try:
        pv = preview(originals, cfg, seed=int(seed), k=k)  # images: n×K×1×S×S
    except CharlabError as e:
        ui.error(e)
        st.stop()
    tiles = np.concatenate([originals.numpy()[:, None], np.asarray(pv.images)], axis=1)  # n×(1+K)×1×S×S
    s = tiles.shape[-1]
    ui.show_grid(tiles.reshape(-1, s, s), ncols=k + 1, px=72, gap_after=0,
                 caption=f"Left: the original. Right: {k} variants with preset '{cfg.preset}', seed {seed}.")
    if cfg.is_identity():
        st.caption("This preset changes nothing: the variants equal the original.")
    with st.expander("Parameters drawn for each variant (empty = the op was not applied)"):
        rows = [{"image": i + 1, "variant": j + 1, **{k_: (str(v) if isinstance(v, tuple) else v) for k_, v in d.items()}}
                for i, per_image in enumerate(pv.params) for j, d in enumerate(per_image)]
        st.dataframe(rows, hide_index=True, height=260)

st.divider()
st.subheader("Class balancing")
from charlab.balance import BALANCE_STRATEGIES, effective_counts  # noqa: E402

counts = train.counts()
b1, b2 = st.columns([1, 2.4], gap="large")
with b1:
    strategy = st.selectbox("Strategy", list(BALANCE_STRATEGIES), key="aug_balance", persist_state="session",
                            help="oversample: augmented copies up to a target; sampler: weighted sampling; "
                                 "loss: class-weighted cross-entropy.")
    target = None
    if strategy == "oversample":
        target = st.number_input("Target per class (0 = the median)", 0, 100_000, 0, key="aug_target") or None
    st.session_state["aug_balance_target"] = target
try:
    after = np.asarray(effective_counts(counts, strategy, target=target), dtype=float)
except CharlabError as e:
    ui.error(e)
    st.stop()
with b2:
    order = np.argsort(-counts, kind="stable")
    names = [train.classes[i] for i in order]
    fig = go.Figure([
        go.Bar(x=names, y=counts[order], name="before", marker_color="#BAB0AC"),
        go.Bar(x=names, y=after[order], name=f"per epoch with '{strategy}'", marker_color="#4C78A8"),
    ])
    fig.update_layout(barmode="group", height=320, margin=dict(l=10, r=10, t=30, b=10), bargap=0.15,
                      # every label when they fit; past 40 classes Plotly thins them instead of overlapping them
                      xaxis=dict(type="category", dtick=1 if len(names) <= 40 else None, tickangle=0),
                      yaxis=dict(title="images seen per epoch"),
                      legend=dict(orientation="h", y=1.12))
    st.plotly_chart(fig, key="aug_balance_chart")
