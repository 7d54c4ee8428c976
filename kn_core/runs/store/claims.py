"""Claims: batches (and the app's workers) sharing a store split the work. Each claims a prompt's result key just
before computing it; a claim lapses when it expires or when its holder, on this host, is no longer running, so a
killed batch holds nothing back."""
from __future__ import annotations

import os
import socket
import sqlite3
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, ContextManager, Literal, Protocol

if TYPE_CHECKING:
    from kn_core.runs.atlas import ModelAtlas

CLAIM_TTL_S = 900.0  # a claim lapses unless renewed within this time (its holder renews it with each result)


@dataclass(frozen=True)
class Claimant:
    """Who holds claims: one batch run (``id``) of a process (``pid``) on ``host``."""

    id: str
    host: str
    pid: int

    @classmethod
    def this_process(cls) -> "Claimant":
        """A new claimant for a run in this process (active until :meth:`ResultStore.release_all`)."""
        claimant = cls(uuid.uuid4().hex, socket.gethostname(), os.getpid())
        _ACTIVE.add(claimant.id)
        return claimant


ClaimState = Literal["claimed", "stored", "busy"]


class Claimable(Protocol):
    """What the claims need of a key: its ``digest`` (a prompt's :class:`~kn_core.runs.store.ResultKey`, or the
    queue's key of a fact-check job)."""

    @property
    def digest(self) -> str: ...
_ACTIVE: set[str] = set()  # the claimants of this process whose runs have not ended (e.g. the app's batch threads)


def _running(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host (one of another user counts)."""
    if pid < 1:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return True


def _held(holder: sqlite3.Row, claimant: Claimant, now: float) -> bool:
    """Whether ``holder`` (a claims row) still holds its claim against ``claimant``: another run's claim that
    has not expired and, when it was made on this host, whose run is still going: in this process, an active
    claimant (another with this pid was an earlier process, now gone); else a process that still runs."""
    if holder["owner"] == claimant.id or holder["expires"] <= now:
        return False
    if holder["host"] != claimant.host:
        return True
    if holder["pid"] == claimant.pid:
        return holder["owner"] in _ACTIVE
    return _running(holder["pid"])




class Claims:
    """The claim methods of :class:`~kn_core.runs.store.ResultStore` (over its ``_write``, ``_query`` and
    ``_atlas_of``)."""

    if TYPE_CHECKING:  # what the claim methods use of the store; ResultStore defines them
        def _write(self) -> ContextManager[sqlite3.Connection]: ...

        def _query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]: ...

        def _atlas_of(self, digest: str) -> ModelAtlas | None: ...

    def claim(self, key: Claimable, claimant: Claimant, ttl: float = CLAIM_TTL_S) -> ClaimState:
        """Claim ``key`` for ``claimant`` to compute for ``ttl`` seconds: ``"stored"`` when its result is stored,
        ``"busy"`` while another running batch holds it, else ``"claimed"`` (taking over a lapsed claim)."""
        now = time.time()
        with self._write() as conn:
            if (conn.execute("SELECT 1 FROM results WHERE key = ?", (key.digest,)).fetchone()
                    or self._atlas_of(key.digest) is not None):
                return "stored"
            holder = conn.execute("SELECT owner, host, pid, expires FROM claims WHERE key = ?",
                                  (key.digest,)).fetchone()
            if holder is not None and _held(holder, claimant, now):
                return "busy"
            conn.execute("INSERT OR REPLACE INTO claims (key, owner, host, pid, expires) VALUES (?, ?, ?, ?, ?)",
                         (key.digest, claimant.id, claimant.host, claimant.pid, now + ttl))
        return "claimed"

    def release(self, key: Claimable, claimant: Claimant, ttl: float = CLAIM_TTL_S) -> None:
        """Give up ``claimant``'s claim of ``key`` (its result is stored, or it failed) and renew its other
        claims for ``ttl`` seconds."""
        with self._write() as conn:
            conn.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key.digest, claimant.id))
            conn.execute("UPDATE claims SET expires = ? WHERE owner = ?", (time.time() + ttl, claimant.id))

    def release_all(self, claimant: Claimant) -> None:
        """Give up every claim of ``claimant``: its run has ended."""
        _ACTIVE.discard(claimant.id)
        with self._write() as conn:
            conn.execute("DELETE FROM claims WHERE owner = ?", (claimant.id,))

    def claims(self) -> dict[str, str]:
        """The claims held now (lapsed ones included): result key → claimant id."""
        return {row["key"]: row["owner"] for row in self._query("SELECT key, owner FROM claims")}
