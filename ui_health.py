"""The Dataset page's data-health section: counts, leak pairs, duplicate and outlier grids, and
the embedding map whose box / lasso selection opens the images and feeds the relabel loop.

Widgets -> charlab.health -> Plotly. Plotly's hover label names the image (class, split, path,
flag); ui_hover draws the image itself beside it, from a sprite sheet of the plotted points.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

import ui
import ui_hover
from charlab.errors import CharlabError

COLOUR_BY = {"label": "class", "split": "split", "correct": "correct / wrong", "flag": "health flag"}
FLAG_COLOURS = {"ok": "#9DB4CF", "duplicate": "#F2B701", "leak": "#E45756", "blank": "#444444",
                "inverted": "#B279A2", "far": "#54A24B"}
# 74 distinct colours (Plotly's Dark24, Alphabet and Light24): 62 classes never share one;
# the map also writes each class's name at its centre, which no palette can replace
PALETTE = px.colors.qualitative.Dark24 + px.colors.qualitative.Alphabet + px.colors.qualitative.Light24
MAX_SHOWN = 120  # images shown for one selection (the rest are counted)


@st.cache_resource(max_entries=2, show_spinner=False)
def report(key: str, ref: Optional[str], mtime: float, embedding: str, method: str):
    """charlab.health.check on the sidebar's splits (charlab caches it on disk as well)."""
    from charlab.health import check

    splits = ui.load_splits(key)
    pred = ui.predictor(ref, mtime) if ref and embedding == "model" else None
    bar = ui._Bar("Checking the data's health…")
    try:
        return check({"train": splits.train, "val": splits.val, "test": splits.test}, pred,
                     embedding=embedding, method=method, progress=bar)
    finally:
        bar.close()


@st.cache_resource(max_entries=2, show_spinner=False)
def map_points(key: str, ref: Optional[str], mtime: float, embedding: str, method: str):
    """(rows the map draws, their hover sprite sheet) for report(...) with the same arguments."""
    rep = report(key, ref, mtime, embedding, method)
    rows = rep.map_rows()
    return rows, ui_hover.sprite(rep.images(rows))


def section(cfg) -> None:
    """The whole data-health section for the DataConfig the page loaded."""
    from charlab.health import EMBEDDINGS, MAPS, prepared_for

    st.header("Data health")
    ref = st.session_state.get("model_ref")
    c = st.columns([1.2, 1.2, 1.2, 2])
    embedding = c[0].segmented_control("Embedding", EMBEDDINGS.names(), default="model" if ref else "pixels",
                                       required=True, key="dh_emb", help="model: the active model's penultimate "
                                       "features; pixels: 32×32 thumbnails, no model needed")
    method = c[1].segmented_control("Map", MAPS.names(), default="umap", required=True, key="dh_map",
                                    format_func=str.upper)
    colour = c[2].selectbox("Colour by", list(COLOUR_BY), format_func=COLOUR_BY.get, key="dh_colour")
    if not c[3].toggle("Run the checks", value=True, key="dh_on",
                       help="The first run embeds every image and reads the files again (one to two minutes "
                            "for 60,000 images on 2 cores); later visits come from the cache."):
        return
    try:
        if embedding == "model" and ref:
            asked, cfg = cfg.image_size, prepared_for(cfg, ui.predictor_for(ref))
            if cfg.image_size != asked:
                st.caption(f":material/info: The images are checked at {cfg.image_size}×{cfg.image_size}, as the "
                           f"active model prepares them, not at the sidebar's {asked}×{asked}.")
        args = (ui.cfg_key(cfg), ref, ui._mtime(ref) if ref else 0.0, embedding, method)
        rep = report(*args)
    except CharlabError as e:
        ui.error(e)
        return
    _summary(rep)
    _leaks(rep)
    _map(rep, colour, *map_points(*args))
    _findings(rep)


def _summary(rep) -> None:
    n = rep.counts()
    tested = int((rep.table["split"] == "test").sum())
    m = st.columns(6)
    m[0].metric("Leaks", f"{n['leaks']}" + (f" / {tested}" if tested else ""),
                help="Test images with an exact or near copy in train or validation.")
    m[1].metric("Exact copies", n["exact_duplicate_groups"], help="Groups of byte-identical files (content hash).")
    m[2].metric("Near copies", n["near_duplicate_groups"],
                help=f"Groups of images within {rep.meta['near_threshold']:g} RMS difference of each other "
                     "(32×32 thumbnails): resized, shifted or re-encoded copies.")
    m[3].metric("Blank", n["blank"], help="No ink, or a speck far below the set's usual ink coverage.")
    m[4].metric("Inverted", n["inverted"], help="Light ink on dark paper where the rest is dark on light (or the reverse).")
    m[5].metric("Far off", n["far"], help=_far_text(rep.meta))
    meta = rep.meta
    st.caption(f"Embedding: {meta['embedding']}" + (f" of {meta['model']}" if meta.get("model") else "")
               + (" · from the cache" if rep.from_cache else f" · computed in {meta.get('seconds', 0):.1f} s"))
    for note in meta.get("notes", []):
        st.caption(":material/info: " + note)


def _far_text(meta: dict) -> str:
    return (f"Far from every class: the image's distance to the nearest class (its closest members and the class "
            f"centre) is over {meta['far_factor']:g}× the usual distance of a class's own images. Another alphabet, "
            "noise or a mis-scan, or writing unlike the rest of its class: worth a look, not always wrong.")


def _leaks(rep) -> None:
    leaks = rep.leaks
    if not len(leaks):
        tested = int((rep.table["split"] == "test").sum())
        st.success(f"No test image has a near-copy in train ({tested} test images checked)." if tested
                   else "No test split: nothing can leak.", icon=":material/verified:")
        return
    st.error(f"**{len(leaks)} test image{'s have' if len(leaks) > 1 else ' has'} a near-copy in train.** "
             "Scores on the test split overstate how the model does on new writing.", icon=":material/warning:")
    shown = leaks.head(24)
    pairs = [_strip([rep.image(t), rep.image(o)], 2) for t, o in zip(shown["test_row"], shown["train_row"])]
    caps = [f"test | train · {d:.3f}" for d in shown["distance"]]
    ui.images_row(pairs, caps, px=64)
    with st.expander("The leaking pair" if len(leaks) == 1 else f"All {len(leaks)} leaking pairs"):
        st.dataframe(leaks[["test", "train", "distance"]], hide_index=True, height=min(35 * len(leaks) + 38, 320))


def _strip(images: list, k: int) -> np.ndarray:
    """Images side by side with grey gutters, padded to k slots so every strip has one width."""
    h, w = images[0].shape
    gap = np.full((h, 2), 90, np.uint8)
    slots = list(images) + [np.full((h, w), 40, np.uint8)] * (k - len(images))
    return np.concatenate([x for im in slots for x in (im, gap)][:-1], 1)


def _map(rep, colour: str, rows: np.ndarray, sheet: dict) -> None:
    t = rep.table.iloc[rows]  # the plotted points: all, or every flagged one and a sample (map_rows)
    if colour == "correct" and "correct" not in t:
        st.caption("Correct / wrong needs the model embedding of an active model; coloured by class instead.")
        colour = "label"
    values = (t[colour].map({1.0: "correct", 0.0: "wrong"}).fillna("unknown class") if colour == "correct"
              else t[colour]).astype(str).to_numpy()
    fig = go.Figure()
    trace = go.Scattergl if len(t) > 5000 else go.Scatter  # WebGL keeps thousands of points responsive
    cats = list(dict.fromkeys(values))
    if colour == "flag":
        cats = [f for f in FLAG_COLOURS if f in cats]
    for i, cat in enumerate(cats):
        at = np.flatnonzero(values == cat)  # positions in `rows`: the point's sprite cell
        sub = t.iloc[at]
        fig.add_trace(trace(
            x=sub["x"], y=sub["y"], mode="markers", name=cat,
            customdata=np.stack([rows[at], sub["label"], sub["split"], sub["path"], sub["flag"], at], 1),
            marker=dict(size=4 if len(t) > 5000 else 6, opacity=0.75,
                        color=FLAG_COLOURS.get(cat) if colour == "flag" else PALETTE[i % len(PALETTE)]),
            hovertemplate="<b>%{customdata[1]}</b> · %{customdata[2]} · %{customdata[4]}<br>%{customdata[3]}<extra></extra>"))
    if colour == "label" and len(cats) > 1:  # each class's name on its densest point, above the WebGL points
        xy = t[["x", "y"]].to_numpy()
        for name in cats:
            cx, cy = _densest(xy[values == name])
            fig.add_annotation(x=cx, y=cy, text=name, showarrow=False, font=dict(size=12, color="#111"),
                               bgcolor="rgba(255,255,255,0.7)", borderpad=1)
    fig.update_layout(height=560, margin=dict(l=10, r=10, t=10, b=10), dragmode="lasso", legend=dict(itemsizing="constant"),
                      showlegend=len(cats) <= 74, xaxis=dict(visible=False), yaxis=dict(visible=False))
    st.subheader(f"Map ({rep.meta['method'].upper()} of the {rep.meta['embedding']} embedding)")
    shown = (f"All {rep.n:,} images." if len(rows) == rep.n else
             f"{len(rows):,} of the {rep.n:,} images: every flagged one and a random sample of the rest "
             "(the checks above cover all of them).")
    st.caption(shown + " Hover a point to see its image; click one, or draw a lasso or box round several, "
               "to open them in a grid.")
    ui_hover.thumbnails("dh_map_chart", sheet, col=5)
    event = st.plotly_chart(fig, key="dh_map_chart", on_select="rerun", selection_mode=("points", "box", "lasso"))
    pts = event.selection.points if event and event.selection else []
    picked = sorted({int(p["customdata"][0]) for p in pts if p.get("customdata") is not None})
    if picked:
        _selected(rep, picked, sampled=len(rows) < rep.n)


def _densest(own: np.ndarray) -> np.ndarray:
    """M×2 points of one class -> the one with a third of its classmates closest around it: the
    middle of its main clump (a median can fall between two clumps; a small k finds a tight
    knot of near-copies off to the side)."""
    pts = own[np.random.default_rng(0).permutation(len(own))[:1500]]  # 1500² distances at most
    d = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(2))  # m×m
    kk = min(max(10, len(pts) // 3), len(pts) - 1)
    return pts[np.argmin(np.partition(d, kk, 1)[:, kk])] if kk > 0 else pts[0]


def _selected(rep, rows: list[int], sampled: bool = False) -> None:
    t = rep.table.iloc[rows]
    st.subheader(f"{len(rows)} selected image{'s' if len(rows) > 1 else ''}")
    if sampled:
        st.caption("Of the points drawn: the map shows a sample of this source's images (see above).")
    shown = rows[::max(1, -(-len(rows) // MAX_SHOWN))][:MAX_SHOWN]  # spread over the whole selection
    ui.images_row([rep.image(r) for r in shown],
                  [f"{rep.table.at[r, 'label']} · {rep.table.at[r, 'split']}" for r in shown], px=64)
    if len(rows) > len(shown):
        st.caption(f"{len(shown)} of the {len(rows)} selected images, spread over the selection")
    trainable = t[t["split"] != "test"]
    if not len(trainable):
        st.caption("Only test images are selected; label decisions apply to the training data.")
        return
    classes = sorted(set(rep.table["label"]))
    with st.form("dh_decide", border=True):
        c = st.columns([2, 1, 1])
        new = c[0].selectbox("Relabel the selected training images as", classes, key="dh_new_label")
        relabel = c[1].form_submit_button("Relabel", icon=":material/edit:")
        exclude = c[2].form_submit_button("Exclude", icon=":material/block:")
    if relabel or exclude:
        _decide(rep, trainable, "relabel" if relabel else "exclude", new)


def _decide(rep, rows, action: str, label: str) -> None:
    from charlab import labels

    source = st.session_state.get("source") or ""
    try:
        ov = labels.LabelOverrides.load(labels.default_path_for(source), source)
        n = ov.decide([{"hash": r.hash or None, "path": r.path, "action": action, "label": label, "given": r.label}
                       for r in rows.itertuples()], what=f"{action} {len(rows)} images from the data-health map")
        path = ov.save()
    except CharlabError as e:
        ui.error(e)
        return
    st.success(f"{action.capitalize()}d {n} image{'s' if n != 1 else ''}; saved to `{path}`. "
               "Every loader applies these decisions; undo them on the Labels page.", icon=":material/check:")


def _findings(rep) -> None:
    left, right = st.columns(2, gap="large")
    with left:
        st.subheader("Duplicates")
        if not rep.duplicates:
            st.caption(f"None: no two images within {rep.meta['near_threshold']:g} of each other.")
        groups = rep.duplicates[:24]
        if groups:  # one tile per group, its images side by side
            k = max(min(len(g["rows"]), 4) for g in groups)
            tiles = [_strip([rep.image(r) for r in g["rows"][:4]], k) for g in groups]
            ui.images_row(tiles, [f"{g['kind']} · {'+'.join(g['splits'])}" for g in groups], px=48)
            with st.expander("The group's files" if len(rep.duplicates) == 1 else f"All {len(rep.duplicates)} groups"):
                st.dataframe([{"kind": g["kind"], "splits": ", ".join(g["splits"]), "images": len(g["paths"]),
                               "files": ", ".join(g["paths"])} for g in rep.duplicates], hide_index=True)
    with right:
        st.subheader("Outliers")
        if not len(rep.outliers):
            st.caption("None: no blank, inverted or far-off image.")
        for kind, grp in rep.outliers.groupby("kind", sort=False):
            rows = grp["row"].astype(int).tolist()[:24]
            st.markdown(f"**{kind}** · {len(grp)}")
            ui.images_row([rep.image(r) for r in rows], [rep.table.at[r, "label"] for r in rows], px=48)
            if kind == "far":
                st.caption(_far_text(rep.meta) + " Sorted farthest first.")
        st.subheader("Look-alike classes")
        if rep.lookalikes:
            st.markdown(" · ".join(f"`{' '.join(g)}`" for g in rep.lookalikes))
            st.caption(f"Classes whose images neighbour each other in the embedding (share of links ≥ "
                       f"{rep.meta['overlap_min']:.0%}); strongest pairs: "
                       + ", ".join(f"{r.a}/{r.b} {r.overlap:.0%}" for r in rep.overlap.head(6).itertuples()))
        else:
            st.caption("None: every class keeps to itself in the embedding.")
