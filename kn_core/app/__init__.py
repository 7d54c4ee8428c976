"""The app room: the only Streamlit code in the project (resources, sidebar, guard, shared views) and
the plotly figures the pages draw. The pages themselves live in ``views/`` and ``app.py``.

May import every other room; nothing imports it but the pages.
"""
