"""charlab — the Streamlit app. Run: streamlit run app.py

This file is the frame around every page: page config, the shared sidebar (data source,
image size, active model) and the navigation. Pages live in pages/, one thin file each.
"""
import streamlit as st

import ui

st.set_page_config(page_title="charlab", page_icon="✍️", layout="wide")
ui.init_state()

PAGES = [
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/dataset.py", title="Dataset", icon="📊"),
    st.Page("pages/augment.py", title="Augmentation", icon="🔀"),
    st.Page("pages/train.py", title="Train", icon="🚀"),
    st.Page("pages/runs.py", title="Runs", icon="📈"),
    st.Page("pages/errors.py", title="Errors", icon="🔍"),
    st.Page("pages/draw.py", title="Draw", icon="✏️"),
]
page = st.navigation(PAGES)
ui.sidebar()
page.run()
