"""Waiting in AppTest for the model's background worker: a page that queued work shows a watching fragment
(with a Cancel button) until everything is stored; AppTest does not re-run fragments by itself, so the test
runs the page again until the fragment is gone."""
from __future__ import annotations

import time

from helpers import shown
from streamlit.testing.v1 import AppTest

WAIT_S = 240
TIMEOUT = 300  # AppTest's timeout for one run of a page


def watching(at: AppTest) -> bool:
    """Whether the page shows work still waiting for the worker."""
    return any(button.label == "Cancel" for button in at.button)


def until_stored(at: AppTest, timeout: float = WAIT_S) -> AppTest:
    """Run ``at`` again until nothing it queued waits any more (at most ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while watching(at):
        assert time.monotonic() < deadline, "the worker did not finish in time"
        time.sleep(0.3)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
    return at


def open_app(page: str | None = None, params: dict | None = None, model: str = "demo-mlm",
             state: dict | None = None) -> AppTest:
    """The app on ``page`` (default: the first) with ``model`` chosen, URL ``params`` and session ``state`` set,
    run until nothing it queued waits any more."""
    at = AppTest.from_file("../../app.py", default_timeout=TIMEOUT)
    at.session_state["model_choice"] = model
    for key, value in (state or {}).items():
        at.session_state[key] = value
    if params:
        at.query_params.update(params)
    if page:
        at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return until_stored(at)


def texts(elements) -> list[str]:
    """What each element shows, as text."""
    return [shown(e) for e in elements]
