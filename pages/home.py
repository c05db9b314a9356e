"""Landing page: what the lab does, where each page is, and the current setup. Cheap to render
(no torch), so the app opens fast."""
from collections import Counter

import streamlit as st

import ui
from charlab.errors import CharlabError

st.title("✍️ charlab")
st.markdown("An interactive lab for **handwritten character recognition**: look at a dataset's class "
            "balance, preview augmentations, train models in the background and watch them learn, "
            "inspect their errors, and draw a character to see what the model thinks.")

CARDS = [
    ("pages/dataset.py", "📊 Dataset", "Class counts and imbalance, sample images per class, split sizes, skipped files."),
    ("pages/augment.py", "🔀 Augmentation", "See exactly what the model will see: presets or per-op sliders, and class balancing."),
    ("pages/train.py", "🚀 Train", "Pick a model and settings, launch a run in the background (it survives reloads)."),
    ("pages/runs.py", "📈 Runs", "Live curves of every run, stop / resume / delete, and a config diff."),
    ("pages/errors.py", "🔍 Errors", "Click the confusion matrix, see the mistakes, the worst losses, saliency and label suspects."),
    ("pages/draw.py", "✏️ Draw", "Draw a character with the mouse and get the model's top-5 and where it looked."),
]
cols = st.columns(3)
for i, (path, label, text) in enumerate(CARDS):
    with cols[i % 3].container(border=True):
        st.page_link(path, label=f"**{label}**")
        st.caption(text)

st.subheader("Current setup")
c1, c2, c3 = st.columns(3)
c1.metric("Data source", ui.source() or "—", help="Change it in the sidebar.")
model = st.session_state.get("model_ref")
choices = dict(ui.model_choices())
c2.metric("Active model", choices.get(model, "none") if model else "none")
try:
    from charlab.runs import list_runs

    runs = list_runs(ui.runs_root())
except CharlabError as e:
    runs = []
    ui.error(e)
states = Counter(r.state for r in runs)
c3.metric("Runs", len(runs), help="Training runs under runs/.")
if states:
    st.caption(" · ".join(f"{n} {s}" for s, n in states.most_common()))
if not runs:
    st.info("No training runs yet. Open **Train** to start one — a small model trains in a few "
            "minutes on the built-in synthetic handwriting.")
