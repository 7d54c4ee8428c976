"""Errors, escaping and waiting: the guard that turns every failure into a red box, Markdown escaping of
user text, the model's turn-taking lock, and progress bars."""
from __future__ import annotations

import logging
import re
import time
from contextlib import contextmanager
from typing import Iterator

import streamlit as st

from kn_core.errors import KNError
from kn_core.model.loading import LanguageModel

log = logging.getLogger(__name__)


TURN_POLL_S = 0.5
BUSY = "The model is busy with a queued computation; this part follows as soon as it is free…"
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def plain(text: object) -> str:
    """``text`` with Markdown's special characters escaped, so that user text inside a message shows as
    typed (``**x**`` stays ``**x**``, ``$x$`` is no formula). Streamlit never renders it as HTML anyway."""
    return _MARKDOWN.sub(r"\\\1", str(text))


@contextmanager
def guard() -> Iterator[None]:
    """Show user errors as ``st.error`` with their remedy; anything else as a short message, never a traceback."""
    try:
        yield
    except KNError as exc:
        st.error(plain(exc))
    except Exception as exc:  # the page must never show a traceback
        log.exception("unexpected error in the app")
        st.error(f"Something went wrong ({type(exc).__name__}). The details are in the server log; "
                 "your stored results are unaffected.")


@contextmanager
def model_turn(lm: LanguageModel) -> Iterator[None]:
    """Hold the model's lock, telling the user while the model is busy (its worker computes a queued prompt,
    or another session runs an edit): the wait is queued, not refused, and at most one prompt long.

    While waiting, the note is sent again every :data:`TURN_POLL_S` seconds: each message lets Streamlit stop
    this run when the user changes a widget or leaves, so a page waiting for the model stays usable. Whatever
    happens while waiting or working, the lock is released once taken.
    """
    acquired = lm.lock.acquire(blocking=False)
    try:
        if not acquired:
            note = st.empty()
            with lm.turns.waiting():  # the worker lets us go before its next prompt
                while not acquired:
                    note.info(BUSY)
                    acquired = lm.lock.acquire(timeout=TURN_POLL_S)
            note.empty()
        yield
    finally:
        if acquired:
            lm.lock.release()


def duration(seconds: float) -> str:
    """``12 s``, ``4 min``, ``1.5 h``."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{round(seconds / 60)} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def estimate(elapsed: float, fraction: float) -> str:
    """" — about 2 min left" from the time taken so far and the share done ("" until there is a basis)."""
    if fraction < 0.01 or fraction >= 1 or elapsed < 1:
        return ""
    return f" — about {duration(elapsed * (1 - fraction) / fraction)} left"


def progress_bar(text: str):
    """A progress bar and its callback ``report(fraction, message=None)``: the message replaces the text, and
    an estimate of the time left follows it once some work is done."""
    bar = st.progress(0.0, text=text)
    started = time.monotonic()

    def report(fraction: float, message: str | None = None) -> None:
        fraction = min(1.0, max(0.0, fraction))
        shown = plain(message) if message else text
        bar.progress(fraction, text=shown + estimate(time.monotonic() - started, fraction))

    return bar, report
