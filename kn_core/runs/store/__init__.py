"""The persistent result store: AMIG attributions, batch failures and derived JSON documents in SQLite.

One file, ``store.sqlite``, under ``$KN_EXPLORER_HOME`` (default: the platform's user cache folder).
A result is keyed by everything that determines it (:class:`ResultKey`): the model's name and weights
fingerprint, the prompt's token ids, template, subject, object, the language, the baseline, the number of
steps, the layers and :data:`METHOD_VERSION`. The engine is not part of the key (the engines agree to 1e-4).
Scores are stored exactly, as float32 blobs with their shape.

Safety:
- concurrency: WAL journal (readers never block the writer), one connection per thread and process, a
  30 s busy timeout, and every write in its own ``BEGIN IMMEDIATE`` transaction (one writer at a time);
  inserting a result that is already stored is a no-op, so racing writers never duplicate anything.
- faults: a process killed mid-write loses at most its open transaction; committed results stay intact.
- a corrupt, foreign, newer or read-only file raises :class:`~kn_core.errors.StoreError` naming the path
  and the remedy; a user's file is never deleted or rewritten automatically.
- the atlas: results that ship with the repository (:mod:`kn_core.runs.atlas`) are read as a read-only layer
  under the file: every read (a result, a listing, a document) falls back to it for the models whose installed
  weights it was computed on; the file wins where both hold a key, and nothing of the atlas is written into it.
- claims: a batch claims each prompt (its result key) just before computing it, so batches sharing the store
  split the work instead of doing it twice (:meth:`ResultStore.claim`). A claim lapses when it expires or when
  its holder, on this host, is no longer running; a killed batch therefore holds nothing back.

Schema versions: 1 had no ``claims`` table; 2 had no ``rule`` column (the rule was in each result's key and
record only, and not in a failure's key). Opening an older store upgrades it in place, in one transaction.
A process of the older version that had the store open before the upgrade goes on writing rows without the
new column: its results get their rule from their own record (a trigger), its failures the rule every old
failure is assumed to have (the column's default), so neither is refused nor stored under the wrong rule.
A stored record this version cannot read (a field it does not know, from a newer version, or a damaged row)
raises :class:`~kn_core.errors.StoreError` naming the result and the remedy.

The package, one concept per module: :mod:`.records` (keys, rows, encoding), :mod:`.schema` (tables, versions,
upgrades), :mod:`.claims`, :mod:`.location` (the path and its checks), :mod:`.storage` (:class:`ResultStore`).
Every name is importable from ``kn_core.runs.store`` as before."""
from __future__ import annotations

from kn_core.home import HOME_VARIABLE
from kn_core.runs.store.claims import _ACTIVE, CLAIM_TTL_S, Claimant, ClaimState, _held, _running
from kn_core.runs.store.location import (BUSY_TIMEOUT_S, FILE_NAME, REMEDY, _check_location, _explain, default_path,
                                         writable)
from kn_core.runs.store.records import (KEYLESS_RULE, METHOD_VERSION, SUMMARY_COLUMNS, Failure, ResultKey,
                                        ResultSummary, _decode, _decode_or_explain, _encode, _failure_id)
from kn_core.runs.store.schema import (APPLICATION_ID, CLAIMS_SCHEMA, FAILURES_TABLE, RULE_TRIGGER, SCHEMA,
                                       SCHEMA_VERSION, UPGRADE_3)
from kn_core.runs.store.storage import EXPORT_BATCH, ResultStore, _default_atlas


__all__ = ["APPLICATION_ID", "BUSY_TIMEOUT_S", "CLAIMS_SCHEMA", "CLAIM_TTL_S", "EXPORT_BATCH", "FAILURES_TABLE",
           "FILE_NAME", "HOME_VARIABLE", "KEYLESS_RULE", "METHOD_VERSION", "REMEDY", "RULE_TRIGGER", "SCHEMA",
           "SCHEMA_VERSION", "SUMMARY_COLUMNS", "UPGRADE_3", "ClaimState", "Claimant", "Failure", "ResultKey",
           "ResultStore", "ResultSummary", "default_path", "writable",
           # internals that the work queue, the atlas and tests use
           "_ACTIVE", "_check_location", "_decode", "_decode_or_explain", "_default_atlas", "_encode", "_explain",
           "_failure_id", "_held", "_running"]
