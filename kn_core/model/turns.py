"""Taking turns with a loaded model. Its lock (``LanguageModel.lock``) serialises everything that installs hooks;
a lock lets a thread that releases it take it again before a waiting one wakes, so the background worker,
computing prompt after prompt, could keep a page waiting for a whole queue. :class:`Turns` counts who waits for
the lock (a page's model turn, the measurer), and the worker lets them go first before its next prompt."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator


class Turns:
    """Who waits for a model's lock (:meth:`waiting`), and a way to let them go first (:meth:`after_others`)."""

    def __init__(self) -> None:
        self._waiting = 0
        self._changed = threading.Condition()

    @property
    def waiting_count(self) -> int:
        return self._waiting

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a wait for the model's lock: counted as waiting until the block ends (the lock taken, or given
        up)."""
        with self._changed:
            self._waiting += 1
        try:
            yield
        finally:
            with self._changed:
                self._waiting -= 1
                self._changed.notify_all()

    def after_others(self, limit_s: float) -> bool:
        """Before taking the lock again: wait until nobody waits for it (they took their turn), at most
        ``limit_s`` seconds (so that a stream of pages cannot starve the caller). Returns whether nobody waits."""
        deadline = time.monotonic() + limit_s
        with self._changed:
            return self._changed.wait_for(lambda: self._waiting == 0, max(0.0, deadline - time.monotonic()))
