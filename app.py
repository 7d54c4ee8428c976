"""KN Explorer: ``streamlit run app.py``. The sidebar picks the model; the pages are listed explicitly."""
import logging

import streamlit as st

from kn_core.app import ui

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
st.set_page_config(page_title="KN Explorer", page_icon="🧠", layout="wide")

PAGES = [
    st.Page("views/fact_browser.py", title="Fact browser", icon="🔎", default=True),
    st.Page("views/custom_triple.py", title="Custom triple", icon="✏️"),
    st.Page("views/languages.py", title="Language comparison", icon="🌐"),
    st.Page("views/fact_check.py", title="Fact-check", icon="✅"),
    st.Page("views/about.py", title="About", icon="ℹ️"),
]

page = st.navigation(PAGES)
st.session_state["settings"] = ui.sidebar()
page.run()
