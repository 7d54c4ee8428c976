"""The store's records: what keys a result (:class:`ResultKey`), a listing row, a batch failure, and how an
attribution becomes a ``results`` row and back (this version's records and older ones; a record of a newer
version or a damaged one is a :class:`~kn_core.errors.StoreError`)."""
from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import asdict, dataclass, fields as dataclass_fields
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import numpy as np

from kn_core.attribution.result import Attribution, AttributionConfig
from kn_core.data.prompts import Prompt
from kn_core.errors import KNError, StoreError
from kn_core.model.fingerprint import model_fingerprint
from kn_core.runs.store.location import REMEDY

if TYPE_CHECKING:
    from kn_core.model.loading import LanguageModel

# bump whenever the attribution maths changes: old results then stop matching (their rows stay readable).
# 2: ``masked`` is the paper's formula (one integral per masked prompt, averaged); version 1's ``masked`` was
# one integral from the mean baseline, now ``masked-mean``.
METHOD_VERSION = 2
# the rule every result had before rules could be chosen: keys (and document keys) of that rule leave it out, so
# that they stay what they were; fixed, whatever the default rule is now
KEYLESS_RULE = "riemann-right"
SUMMARY_COLUMNS = "key, model, lang, subject, object, template, baseline, steps, rule, p_object, created"


@dataclass(frozen=True)
class ResultKey:
    """Everything that determines an attribution; :attr:`digest` is the store's primary key."""

    fingerprint: str
    model: str
    lang: str
    template: str
    subject: str
    object: str
    input_ids: tuple[int, ...]
    target_positions: tuple[int, ...]
    object_ids: tuple[int, ...]
    baseline: str
    steps: int
    layers: tuple[int, ...]
    method_version: int = METHOD_VERSION
    rule: str = KEYLESS_RULE

    @classmethod
    def of(cls, lm: LanguageModel, prompt: Prompt, config: AttributionConfig, lang: str) -> "ResultKey":
        """The key of ``prompt`` on ``lm`` under ``config`` (all layers when ``config.layers`` is None)."""
        layers = tuple(range(lm.n_layers)) if config.layers is None else tuple(config.layers)
        return cls(fingerprint=model_fingerprint(lm), model=lm.name, lang=lang, template=prompt.template,
                   subject=prompt.subject, object=prompt.object, input_ids=tuple(prompt.input_ids),
                   target_positions=tuple(prompt.target_positions), object_ids=tuple(prompt.object_ids),
                   baseline=config.baseline, steps=config.steps, layers=layers, rule=config.rule)

    @property
    def digest(self) -> str:
        fields = asdict(self)
        if fields["rule"] == KEYLESS_RULE:  # the key of every result stored before rules could be chosen
            del fields["rule"]
        text = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ResultSummary:
    """One stored result, without its arrays (for listings)."""

    key: str
    model: str
    lang: str
    subject: str
    object: str
    template: str
    baseline: str
    steps: int
    rule: str
    p_object: float
    created: str


@dataclass(frozen=True)
class Failure:
    """A prompt a batch could not compute, with the reason."""

    model: str
    fingerprint: str
    fact_id: str
    lang: str
    template: str
    baseline: str
    steps: int
    rule: str
    reason: str = ""
    created: str = ""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _blob(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array, dtype=np.float32).tobytes()


def _array(blob: bytes, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32).reshape(shape).copy()


def _tuples(mapping: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in mapping.items()}


def _encode(key: ResultKey, result: Attribution) -> dict:
    """The ``results`` row of ``result`` stored under ``key``."""
    if result.scores.ndim != 2:
        raise StoreError(f"cannot store scores of shape {result.scores.shape}; expected [n_layers, d_ff]")
    record = {"prompt": asdict(result.prompt), "token_probs": list(result.token_probs),
              "config": asdict(result.config), "layers": list(result.layers), "lang": result.lang}
    if result.path_deltas is not None and result.path_baseline_probs is not None:  # float32 → JSON is exact
        record["path_deltas"] = np.asarray(result.path_deltas, dtype=np.float32).tolist()
        record["path_baseline_probs"] = np.asarray(result.path_baseline_probs, dtype=np.float32).tolist()
    return {"key": key.digest, "model": key.model, "fingerprint": key.fingerprint, "lang": key.lang,
            "template": key.template, "subject": key.subject, "object": key.object, "baseline": key.baseline,
            "steps": key.steps, "rule": key.rule, "layers": json.dumps(list(key.layers)),
            "method_version": key.method_version,
            "engine": result.engine_used, "p_object": result.p_object, "n_layers": result.n_layers,
            "d_ff": result.d_ff, "scores": _blob(result.scores), "convergence_delta": _blob(result.convergence_delta),
            "baseline_probs": _blob(result.baseline_probs), "record": json.dumps(record, ensure_ascii=False),
            "created": _now()}


def _paths(record: dict, name: str, n_layers: int) -> np.ndarray | None:
    """A per-path array [n_paths, n_layers] of the record; None in rows written before paths existed."""
    if name not in record:
        return None
    return np.asarray(record[name], dtype=np.float32).reshape(-1, n_layers)


class _Incompatible(ValueError):
    """A stored record with fields this version does not know (written by a newer version)."""


def _arguments(cls, mapping: dict, what: str) -> dict:
    """``mapping`` (a record's part) as keyword arguments of the dataclass ``cls``; :class:`_Incompatible` when it
    holds fields ``cls`` does not have. Fields it lacks keep their defaults (older records)."""
    unknown = sorted(set(mapping) - {f.name for f in dataclass_fields(cls)})
    if unknown:
        raise _Incompatible(f"its {what} has field(s) this version does not know: {', '.join(unknown)}")
    return _tuples(mapping)


def _decode(row: sqlite3.Row | dict) -> Attribution:
    """The attribution of a ``results`` row, in this version's format or an older one (records without ``lang``
    kept it under ``meta``; without per-path arrays or the prompt's ``reader``, those stay empty)."""
    record = json.loads(row["record"])
    n_layers = row["n_layers"]
    return Attribution(prompt=Prompt(**_arguments(Prompt, record["prompt"], "prompt")),
                       scores=_array(row["scores"], (n_layers, row["d_ff"])),
                       convergence_delta=_array(row["convergence_delta"], (n_layers,)),
                       token_probs=tuple(record["token_probs"]),
                       baseline_probs=_array(row["baseline_probs"], (n_layers,)),
                       config=AttributionConfig(**_arguments(AttributionConfig, record["config"], "configuration")),
                       model=row["model"], layers=tuple(record["layers"]),
                       lang=record["lang"] if "lang" in record else record.get("meta", {}).get("lang"),
                       path_deltas=_paths(record, "path_deltas", n_layers),
                       path_baseline_probs=_paths(record, "path_baseline_probs", n_layers),
                       engine_used=row["engine"])


def _decode_or_explain(row: sqlite3.Row | dict, digest: str, where: str, model: str) -> Attribution:
    """:func:`_decode`, with a :class:`StoreError` naming the result, where it is and the remedy in place of a
    traceback when its record is of a newer version or damaged."""
    remedy = f"prune the model {model!r} (`python -m kn_core store prune --model {model}`) or {REMEDY}"
    try:
        return _decode(row)
    except _Incompatible as exc:
        raise StoreError(f"the stored result {digest[:12]} in {where} was written by a newer KN Explorer ({exc}); "
                         f"use that version, or {remedy}") from None
    except (ValueError, KeyError, TypeError, AttributeError, KNError) as exc:
        raise StoreError(f"the stored result {digest[:12]} in {where} is damaged ({type(exc).__name__}: {exc}); "
                         f"{remedy}") from None




def _failure_id(failure: Failure) -> tuple:
    return (failure.model, failure.fingerprint, failure.fact_id, failure.lang, failure.template,
            failure.baseline, failure.steps, failure.rule)
