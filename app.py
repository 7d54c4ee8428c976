"""KN Explorer: ``streamlit run app.py``. The sidebar picks the model; the pages are listed explicitly. A link's
parameters (page, model, relation, fact, language, thresholds) restore its view; without one, the showcase
chosen by ``python -m kn_core showcase`` gives the first look."""
import logging

import streamlit as st

from kn_core.app import ui

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
st.set_page_config(page_title="KN Explorer", page_icon="🧠", layout="wide")

PAGES = [
    st.Page("views/fact_browser.py", title="Fact browser", icon="🔎", default=True),
    st.Page("views/relation_overview.py", title="Relation overview", icon="📊"),
    st.Page("views/neuron_search.py", title="Neuron search", icon="🧭"),
    st.Page("views/compare_models.py", title="Two models", icon="⚖️"),
    st.Page("views/custom_triple.py", title="Custom triple", icon="✏️"),
    st.Page("views/languages.py", title="Language comparison", icon="🌐"),
    st.Page("views/fact_check.py", title="Fact-check", icon="✅"),
    st.Page("views/about.py", title="About", icon="ℹ️"),
]

page = st.navigation(PAGES)
ui.links.open_link()
with ui.guard():
    ui.link_model(ui.showcase())
st.session_state["settings"] = ui.sidebar()
page.run()
