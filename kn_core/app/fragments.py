"""A page's self-refreshing places (``st.fragment`` with ``run_every``: a measurement's place, the worker's
progress), each drawn in a container of its own.

Without that container, a page whose measurement place ran the page again while its other places were looking for
theirs lost its connection in the browser, which then showed a blank page (its console: "Bad delta path index 25
(should be between [0, 24])", the browser sent a place's output for a position past the end of its page):
`tests/app/test_turns.py` failed so in 5 of 9 runs, and once in CI. With a container per place it failed in none
of 10. The cause lies in Streamlit's bookkeeping of fragments (1.67) and was not pinned down further; a minimal
page with three such places did not show it."""
from __future__ import annotations

from datetime import timedelta
from typing import Callable

import streamlit as st


def fragment_here(body: Callable[[], None], run_every: float | timedelta | None) -> None:
    """Draw ``body`` here, in a container of its own, as a fragment that re-runs alone every ``run_every``
    seconds (None: only when its own widgets change)."""
    with st.container():
        st.fragment(body, run_every=run_every)()
