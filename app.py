"""charlab — the Streamlit app. Run: streamlit run app.py"""
import streamlit as st

st.set_page_config(page_title="charlab", page_icon="✍️", layout="wide")
st.title("charlab")
st.write("An interactive lab for handwritten character recognition.")
