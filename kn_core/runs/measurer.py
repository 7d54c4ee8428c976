"""The measurements a page shows beside stored results (edit effects, controls, the critics' checks: seconds of
forward passes each), computed off the page's run, so that a page draws its stored results at once and never
waits for the model.

One :class:`Measurer` per loaded model, shared by the app's sessions (nothing here knows Streamlit): a page asks
for a measurement by a plain key and a function, and asks again while it watches for it; a daemon thread
computes the requests in the order they came, in the model's turn (holding the model's lock, taking turns with
the background worker prompt by prompt), once per key, however many sessions ask. A request nobody has asked
for in the last :data:`STALE_S` seconds (its page was left, its neuron set passed on the way to another) is
dropped: when its turn comes, while it waits for the model, or while it runs (at its next transformer block),
so the model's time goes to what is watched and a page left behind does not hold the model. A request asked for
again after it was dropped shows that its page looks more slowly than that (a busy machine delays the page's
polls): from then on it is dropped only after twice the gap seen, at most :data:`PATIENCE_MAX_S` (else a
measurement longer than the page's polls would be dropped every time, and never shown). The values are kept for
the most recent :data:`KEEP` keys. A measurement that raises is kept as that key's failure, with its reason;
the thread goes on. The thread runs :data:`NICE` levels below the pages' CPU priority (and above the worker's):
a page's measurements start while the browser draws the page.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Hashable

from kn_core.errors import KNError
from kn_core.runs.priority import yield_to_pages

if TYPE_CHECKING:
    from kn_core.model.loading import LanguageModel

log = logging.getLogger(__name__)
NICE = 5  # the measurer's threads run this many nice levels below the pages (the worker: 10)
KEEP = 256  # measured keys kept (the oldest forgotten first)
STALE_S = 2.0  # a request not asked for again within this long is dropped (waiting, or while it runs)
PATIENCE_MAX_S = 10.0  # the longest a watched request waits for its next ask (see the module's docstring)
TURN_POLL_S = 0.25  # how often a measurement waiting for the model's turn looks whether it is still wanted


class _Dropped(BaseException):
    """Raised inside a running measurement that nobody asks for any more (a BaseException: no `except Exception`
    on the way out keeps it)."""


@dataclass(frozen=True)
class Measured:
    """A finished measurement: its ``value``, or the ``error`` (a sentence for the user) it failed with."""

    value: Any = None
    error: str | None = None


class Measurer:
    """Computes requested measurements of ``lm`` in a daemon thread, in the order asked, while someone asks for
    them (:meth:`request`, :meth:`get`, :meth:`wait`)."""

    def __init__(self, lm: LanguageModel, keep: int = KEEP, stale_s: float = STALE_S):
        self.lm, self.keep, self.stale_s = lm, keep, stale_s
        self._done: OrderedDict[Hashable, Measured] = OrderedDict()
        self._waiting: dict[Hashable, Callable[[], Any]] = {}  # insertion order: the oldest first
        self._asked: dict[Hashable, float] = {}  # waiting key → when it was last asked for (monotonic s)
        self._dropped: OrderedDict[Hashable, float] = OrderedDict()  # dropped key → when it was last asked for
        self._patience: dict[Hashable, float] = {}  # key → how long it may go unasked (when not stale_s)
        self._running: Hashable | None = None
        self._holding = False  # the thread holds the model's lock (its measurement runs)
        self._changed = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name=f"kn measurer {lm.name}", daemon=True)
        self._thread.start()

    def get(self, key: Hashable) -> Measured | None:
        """The finished measurement of ``key``, else None."""
        with self._changed:
            return self._done.get(key)

    def request(self, key: Hashable, measure: Callable[[], Any]) -> Measured | None:
        """The measurement of ``key`` if finished; else ``measure`` is queued behind the earlier requests (once
        per key: asking again for a key that waits or runs only says it is still wanted) and None is returned."""
        with self._changed:
            if key in self._done:
                self._done.move_to_end(key)
                return self._done[key]
            now = time.monotonic()
            if key in self._dropped:  # its page still watches, more slowly than stale_s: be more patient
                gap = now - self._dropped.pop(key)
                self._patience[key] = min(PATIENCE_MAX_S, max(self._patience.get(key, self.stale_s), 2 * gap))
            self._asked[key] = now
            if key != self._running:
                if key not in self._waiting:
                    self._waiting[key] = measure
                    self._changed.notify_all()
            return None

    def wait(self, key: Hashable, timeout: float) -> Measured | None:
        """The measurement of ``key`` once finished, waiting at most ``timeout`` seconds (None: not yet)."""
        with self._changed:
            self._changed.wait_for(lambda: key in self._done or self._stop, timeout)
            return self._done.get(key)

    def pending(self, key: Hashable) -> bool:
        """Whether ``key`` waits or runs."""
        with self._changed:
            return key in self._waiting or key == self._running

    def waiting_for_model(self) -> bool:
        """Whether a measurement waits for the model's turn (the background worker is computing a prompt)."""
        return self._running is not None and not self._holding

    def stop(self) -> None:
        with self._changed:
            self._stop = True
            self._changed.notify_all()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stop

    def _stale(self, key: Hashable) -> bool:
        return time.monotonic() - self._asked.get(key, -math.inf) > self._patience.get(key, self.stale_s)

    def _loop(self) -> None:
        yield_to_pages(NICE)  # before its first torch call: the threads torch starts for it inherit the priority
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._waiting or self._stop)
                if self._stop:
                    return
                key = next(iter(self._waiting))  # the oldest request
                measure = self._waiting.pop(key)
                self._running = key
            started = time.monotonic()
            done = None if self._stale(key) else self._measure(key, measure)
            with self._changed:
                self._running = None
                asked = self._asked.pop(key, started)
                if done is None:
                    log.debug("%s: dropped a measurement nobody watches (%s)", self.lm.name, str(key)[:80])
                    self._dropped[key] = asked
                    while len(self._dropped) > self.keep:
                        self._dropped.popitem(last=False)
                else:
                    log.debug("%s: measured in %.1f s (%s)", self.lm.name, time.monotonic() - started,
                              str(key)[:80])
                    self._patience.pop(key, None)
                    self._done[key] = done
                    while len(self._done) > self.keep:
                        self._done.popitem(last=False)
                self._changed.notify_all()

    def _measure(self, key: Hashable, measure: Callable[[], Any]) -> Measured | None:
        """``measure()`` in the model's turn; None when nobody asked for it any more, before its turn came or
        while it ran (checked at every transformer block it runs: the block raises, the measurement's hooks
        are removed on the way out, the model is handed back)."""
        with self.lm.turns.waiting():  # the worker lets us go before its next prompt
            while not self.lm.lock.acquire(timeout=TURN_POLL_S):
                if self._stale(key):
                    return None
        handles = []
        try:
            self._holding = True

            def check(module, args) -> None:
                if threading.get_ident() == self._thread.ident and self._stale(key):
                    raise _Dropped

            handles = [block.register_forward_pre_hook(check) for block in self.lm.adapter.layers(self.lm.model)]
            return Measured(measure())
        except _Dropped:
            return None
        except KNError as exc:
            return Measured(error=str(exc))
        except Exception as exc:  # one measurement's failure is kept as its own; the thread goes on
            log.exception("%s: a measurement failed (%s)", self.lm.name, str(key)[:80])
            return Measured(error=f"{type(exc).__name__}: {exc}")
        finally:
            for handle in handles:
                handle.remove()
            self._holding = False
            self.lm.lock.release()
