"""Landing page: what the lab does, where each page is, and the current setup. Cheap to render
(no torch), so the app opens fast."""
from collections import Counter

import streamlit as st

import ui
from charlab.errors import CharlabError

ui.require_app_frame()

st.title("charlab")
st.markdown("An interactive lab for **handwritten character recognition**: look at a dataset's class "
            "balance, preview augmentations, train models in the background and watch them learn, "
            "inspect their errors, fix wrong labels, and draw a character to see what the model thinks.")

CARDS = [
    ("dataset", "Dataset", "Class counts, samples per class, splits; data health: test images copied in train, "
                           "duplicates, odd images, a map of the data."),
    ("augment", "Augmentation", "See exactly what the model will see: presets or per-op sliders, and class balancing."),
    ("train", "Train", "Pick a model and settings; the run trains in the background and survives reloads."),
    ("runs", "Runs", "Live curves of every run, stop / resume / delete, and a config diff."),
    ("errors", "Errors", "Click the confusion matrix to see the mistakes; per-class scores, worst losses, saliency."),
    ("labels", "Labels", "Find swapped or wrong labels with a model that never saw them, and fix them without "
                         "touching the files."),
    ("draw", "Draw", "Draw a character with the mouse and get the model's top-5 and where it looked."),
]
for row in (CARDS[:4], CARDS[4:]):  # seven cards: a row of four and one of three, none left alone
    for col, (name, label, text) in zip(st.columns(len(row), border=True), row):  # a row's borders share a height
        with col:
            st.page_link(f"pages/{name}.py", label=f"**{label}**", icon=ui.ICONS[name])
            st.caption(text)

st.subheader("Current setup")
model = st.session_state.get("model_ref")
model_label = dict(ui.model_choices()).get(model, "none yet") if model else "none yet"
try:
    from charlab.runs import list_runs

    runs = list_runs(ui.runs_root())
except CharlabError as e:
    runs = []
    ui.error(e)
states = Counter(r.state for r in runs)
run_text = f"{len(runs)} (" + ", ".join(f"{n} {s}" for s, n in states.most_common()) + ")" if runs else "none yet"
st.markdown(f"- **Data source:** `{ui.source() or '—'}` at {st.session_state['image_size']}×{st.session_state['image_size']} "
            f"(change it in the sidebar)\n- **Active model:** {model_label}\n- **Training runs:** {run_text}")
if not runs:
    st.info("No training runs yet. Open **Train** to start one: a small model trains in a few minutes on "
            "the built-in synthetic handwriting.", icon=":material/lightbulb:")
