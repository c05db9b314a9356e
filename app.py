"""charlab — the Streamlit app. Run: streamlit run app.py

This file is the frame around every page: page config, the shared sidebar (data source,
image size, active model) and the navigation. Pages live in pages/, one thin file each.
"""
import streamlit as st

import ui

# The favicon is a file: a ":material/…:" page icon makes the browser fetch it from a font host.
st.set_page_config(page_title="charlab", page_icon=str(ui.ROOT / "assets" / "icon.png"), layout="wide")
ui.init_state()

PAGES = [
    st.Page("pages/home.py", title="Home", icon=ui.ICONS["home"], default=True),
    st.Page("pages/dataset.py", title="Dataset", icon=ui.ICONS["dataset"]),
    st.Page("pages/augment.py", title="Augmentation", icon=ui.ICONS["augment"]),
    st.Page("pages/train.py", title="Train", icon=ui.ICONS["train"]),
    st.Page("pages/runs.py", title="Runs", icon=ui.ICONS["runs"]),
    st.Page("pages/errors.py", title="Errors", icon=ui.ICONS["errors"]),
    st.Page("pages/labels.py", title="Labels", icon=ui.ICONS["labels"]),
    st.Page("pages/draw.py", title="Draw", icon=ui.ICONS["draw"]),
]
page = st.navigation(PAGES)
ui.sidebar()
page.run()
