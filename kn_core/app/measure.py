"""A page's measurements beside stored results (edit effects, controls, the critics' checks: forward passes,
seconds each) never hold up its run: :func:`measured` asks the model's measurer
(:mod:`kn_core.runs.measurer`, shared by every session) and returns the value if it is measured; otherwise it
draws a small watching fragment in its place ("⏳ Measuring …", saying when the model is busy with the background
worker's prompt) that runs the page again once the value is there. So a stored fact's heatmap and neuron table
show at once, and a widget change or another fact is taken up at once while the measurement runs. The place asks
for its measurement again each time it looks: a page left behind stops asking, and the measurer drops what
nobody watches (:data:`kn_core.runs.measurer.STALE_S`)."""
from __future__ import annotations

from typing import Any, Callable, Hashable

import streamlit as st

from kn_core.app.fragments import fragment_here
from kn_core.app.guard import plain
from kn_core.app.resources import measurer
from kn_core.model.loading import LanguageModel

MEASURING = "⏳ Measuring"  # how a waiting measurement's place begins (tests look for it)
WATCH_S = 0.5  # how often a waiting measurement's place looks whether it is done


def measured(lm: LanguageModel, key: Hashable, measure: Callable[[], Any], what: str) -> Any | None:
    """The value of ``measure()`` (plain-valued ``key``: once per model, process and key) if measured; else it is
    requested (it must not call Streamlit: it runs in the measurer's thread, holding the model's lock), its place
    is drawn and None is returned. A measurement that failed shows its reason in a red box (None)."""
    found = measurer(lm).request(key, measure)
    if found is None:
        _place(lm, key, measure, what)
        return None
    if found.error is not None:
        st.error(f"Could not measure {plain(what)}: {plain(found.error)}")
        return None
    return found.value


def _place(lm: LanguageModel, key: Hashable, measure: Callable[[], Any], what: str) -> None:
    def body() -> None:
        if measurer(lm).request(key, measure) is not None:  # asking again: still wanted (see STALE_S)
            st.rerun()  # measured: the page runs again and draws it
        busy = measurer(lm).waiting_for_model()
        st.caption(f"{MEASURING} {plain(what)}…" + (" (waiting for the model's turn: the background worker is "
                                                    "finishing a prompt)" if busy else ""))

    fragment_here(body, WATCH_S)
