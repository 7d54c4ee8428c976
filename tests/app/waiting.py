"""Waiting in AppTest for the model's background worker: a page that queued work shows a watching fragment
(with a Cancel button) until everything is stored; AppTest does not re-run fragments by itself, so the test
runs the page again until the fragment is gone."""
from __future__ import annotations

import time

from streamlit.testing.v1 import AppTest

WAIT_S = 240


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
