"""The Labels page's pieces: the cached reference audit, the decision callbacks that write the
override file, and the review grid. No machine learning here: widgets -> charlab -> render."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

import ui
from charlab.errors import CharlabError
from charlab.labels import LabelOverrides

PER_PAGE = 12  # cards in the review grid (3 rows of 4)
COLS = 4
STATE = {"relabel": "relabelled", "exclude": "excluded", "keep": "kept"}  # decision -> how a card says it


@st.cache_resource(max_entries=2, show_spinner=False)
def audit(ref: str, mtime: float, source: str):
    """(dataset, SuspectReport) of the source's raw training labels, scored by the reference.

    Raw labels (no overrides): the report stays valid while decisions are made, and each card
    shows the decision taken on it. Shared across sessions, so callers never modify it."""
    from charlab.data import load_source
    from charlab.lookalike import for_audit
    from charlab.suspects import audit as _audit, reference_probs

    pred = ui.predictor(ref, mtime)
    cfg = pred.data_config_for(source)
    cfg.labels = None
    bar = ui._Bar(f"Loading {source}…")
    try:
        ds = load_source(source, cfg, split="train", progress=bar)
    finally:
        bar.close()
    if ds is None or len(ds) == 0:
        raise CharlabError(f"{source!r} holds no training images")
    with st.spinner("Reading every image with the reference…"):
        probs, notes = reference_probs(pred, ds)
        rep = _audit(probs, ds, reference=Path(ref).name, lookalikes=for_audit(pred))
    return ds, rep, notes


def overrides(path: Path, source: str) -> LabelOverrides:
    try:
        return LabelOverrides.load(path, source=source)
    except CharlabError as e:  # a corrupt file is shown, never overwritten
        ui.error(e)
        st.stop()


def _record(path: Path, source: str, decide) -> None:
    """Re-read the file, apply one decision (or one bulk step), save atomically."""
    ov = LabelOverrides.load(path, source=source)
    said = decide(ov)
    ov.save()
    st.session_state["lab_said"] = said


def decide(path: Path, source: str, rows: pd.DataFrame, what: str, action: str = "relabel",
           label: str | None = None) -> None:
    """Callback: relabel (to `label` or each row's likely label), exclude or keep `rows` as ONE undo step."""
    items = [{"hash": r.hash, "path": r.source_path, "action": action, "given": r.given,
              **({"label": label or r.likely} if action == "relabel" else {})} for r in rows.itertuples()]
    _record(path, source, lambda ov: f"{what}: {ov.decide(items, what=what)} image(s)")


def typed(path: Path, source: str, rows: pd.DataFrame, key: str, classes: list[str]) -> None:
    """Callback of a card's 'other label' box."""
    label = st.session_state.get(key, "").strip()
    if not label:
        return
    if label not in classes:
        st.session_state["lab_said"] = f"{label!r} is not a class of this source ({', '.join(classes[:12])} …)"
        return
    decide(path, source, rows, f"relabel {rows.iloc[0].source_path} as {label}", label=label)


def undo(path: Path, source: str) -> None:
    _record(path, source, lambda ov: ov.undo() or "nothing to undo")


def grid(ds, rows: pd.DataFrame, ov: LabelOverrides, path: Path, source: str) -> None:
    """Review cards: image, given -> likely, and accept / exclude / keep / another label."""
    classes = list(ds.classes)
    for start in range(0, len(rows), COLS):
        cols = st.columns(COLS, gap="small")
        for col, r in zip(cols, rows.iloc[start:start + COLS].itertuples()):
            one = rows[rows["index"] == r.index]
            done = ov.get(r.source_path)
            with col.container(border=True):
                img = ds.images[int(r.index), 0].numpy()
                st.image(ui.crisp(img, ui.scale_for(img.shape[0], 84)), width=84)
                st.markdown(f"given **{r.given}** → likely **{r.likely}** · {r.score:.2f}")
                if done:
                    st.caption(f"{STATE[done['action']]}" + (f" as **{done['label']}**" if done["action"] == "relabel"
                                                              else ""))
                k = r.hash or r.source_path
                st.button(f"Accept {r.likely}", key=f"lab_ok_{k}", help=f"Relabel as {r.likely}", width="stretch",
                          on_click=decide, args=(path, source, one, f"relabel {r.source_path} as {r.likely}"))
                b2, b3 = st.columns(2, gap="small")  # two per row: three did not fit a 1280-px screen's card
                b2.button("Drop", key=f"lab_ex_{k}", help="Exclude the image from training and evaluation",
                          width="stretch", on_click=decide, args=(path, source, one, f"exclude {r.source_path}", "exclude"))
                b3.button("Keep", key=f"lab_kp_{k}", help=f"The label {r.given} is right", width="stretch",
                          on_click=decide, args=(path, source, one, f"keep {r.source_path}", "keep"))
                st.text_input("Other label", key=f"lab_ty_{k}", placeholder="another label…", label_visibility="collapsed",
                              on_change=typed, args=(path, source, one, f"lab_ty_{k}", classes))


def undecided(rows: pd.DataFrame, ov: LabelOverrides) -> np.ndarray:
    return np.array([ov.get(p) is None for p in rows["source_path"]], dtype=bool)
