"""Computation never blocks a page: pages submit work to the queue of the model's background worker
(:mod:`kn_core.runs.worker`, one per loaded model and server process, shared by every session:
:func:`kn_core.app.resources.worker`) and watch it.

The watching part is a fragment that re-renders alone every :data:`WATCH_S` seconds while work waits: the
results stored so far (a fact's prompt table and heatmap as soon as its first prompt is stored), progress
"k of n", the time left at the worker's measured pace (others' work ahead in the queue included), a Cancel
button, and each failure's reason with a Try again button. Everything else on the page stays usable: a widget
change, another fact or another page leaves the work to the worker, and coming back finds it stored (or still
going, and watched again). Once everything is stored the page runs again in full.

Cancelling drops the queued work and stops a running prompt at its next progress report (nothing is stored);
this session then leaves that work alone until its user asks again (:data:`CANCELLED`); another session
opening the same fact queues it again.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd
import streamlit as st

from kn_core.app import figures
from kn_core.app.fragments import fragment_here
from kn_core.app.guard import duration, plain
from kn_core.app.resources import queue, store, worker
from kn_core.app.views import prompt_table
from kn_core.attribution import Attribution, AttributionConfig
from kn_core.data import FactSet
from kn_core.data.prompts import Prompt
from kn_core.errors import KNError
from kn_core.method.factcheck import FactChecker
from kn_core.model.fingerprint import model_fingerprint
from kn_core.model.loading import LanguageModel
from kn_core.runs import queries
from kn_core.runs.batch import plan
from kn_core.runs.queries import DKNSettings
from kn_core.runs.queue import BATCH, PAGE, FactCheckJob, JobKey, Request, Standing, batch_tag, job_key
from kn_core.runs.store import Failure, ResultKey

WATCH_S = 1.5  # how often a watching fragment re-renders while work waits
CANCELLED = "kn_cancelled"  # session state: the keys (digests) this session cancelled
BATCHES = "kn_batches"  # session state: tag → keys of the relation batches this session started
Keys = Sequence[ResultKey | JobKey]


# -- what the pages ask for ----------------------------------------------------------------------------
def attributions(lm: LanguageModel, prompts: Sequence[Prompt], config: AttributionConfig, lang: str, key: str,
                 fact_id: str = "") -> list[Attribution] | None:
    """Every prompt's attribution when all are stored; else the missing ones are queued for the model's
    worker, the watching fragment is drawn (with the prompts stored so far) and None is returned: the page
    draws what it can without them. ``key`` tells the widgets of each call on a page apart; ``fact_id``
    names the prompts in failure records."""
    keys = [ResultKey.of(lm, p, config, lang) for p in prompts]
    found = [store().get(k) for k in keys]
    if (stored := _all_stored(found)) is not None:
        return stored
    missing = [p for p, k, r in zip(prompts, keys, found) if r is None and k.digest not in _cancelled()]
    # shortest first (an attribution's cost grows with the prompt's length): the first heatmap comes soonest
    _submit(lm, [Request(p, config, lang, fact_id) for p in sorted(missing, key=lambda p: len(p.input_ids))])
    standing = queue().standing(lm, keys)  # the worker may have stored the last ones since they were looked up
    if standing.complete:
        if (stored := _all_stored([store().get(k) for k in keys])) is not None:
            return stored
    watch(lm, keys, config, key, f"{len(keys)} prompt(s) in {lang}", partial=_partial(keys, key), standing=standing)
    return None


def _all_stored(found: Sequence[Attribution | None]) -> list[Attribution] | None:
    """The attributions when every one was found, else None."""
    stored = [r for r in found if r is not None]
    return stored if len(stored) == len(found) else None


def fact_checker(lm: LanguageModel, relation: str, lang: str, config: AttributionConfig,
                 dkn: DKNSettings = DKNSettings(), key: str = "fact_check") -> FactChecker | None:
    """The relation's calibrated checker once it and its held-out evaluation are stored (``python -m kn_core
    showcase --factcheck`` stores them ahead); else the calibration is queued as one job for the model's worker
    (an attribution of every training fact, the degenerate-pair search, λ, the evaluation), watched, and None
    is returned. A checker whose DKN set is empty abstains."""
    job = FactCheckJob(relation, lang, config, dkn)
    digest = job_key(lm, job)
    if queue().standing(lm, [digest]).complete:
        return queries.stored_checker(store(), lm, relation, lang, config, dkn)
    if digest.digest not in _cancelled():
        queue().submit_job(lm, job, PAGE)
        worker(lm).wake()
    standing = queue().standing(lm, [digest])  # the worker may have finished it since
    if standing.complete:
        return queries.stored_checker(store(), lm, relation, lang, config, dkn)
    watch(lm, [digest], config, key, standing=standing,
          what=f"the fact checker of {relation} ({lang}: the training facts' attributions, "
               "the degenerate-pair search, λ and the held-out evaluation)")
    return None


def fact_check_table(lm: LanguageModel, relation: str, lang: str, config: AttributionConfig,
                     dkn: DKNSettings = DKNSettings()) -> pd.DataFrame | None:
    """The held-out evaluation stored with the checker (:func:`fact_checker`): one row per method (wo_DKN by
    the authors' rule, wo_DKN token-exact, with_DKN), each over the claims with a verdict, with ``no_verdict``
    counting the claims without one."""
    return queries.stored_evaluation(store(), lm, relation, lang, config, dkn)


def relation_batch(lm: LanguageModel, factset: FactSet, relation: str, langs: Sequence[str],
                   config: AttributionConfig, max_facts: int | None) -> None:
    """Queue every prompt of the relation's first ``max_facts`` facts in ``langs`` (the prompts of ``python -m
    kn_core batch --relations R``) behind the prompts that pages open; a prompt that cannot be built is
    recorded as a failure, as a batch does. :func:`watch_batch` follows it."""
    requests = _relation_requests(lm, factset, relation, langs, config, max_facts, record=True)
    keys = [ResultKey.of(lm, r.prompt, r.config, r.lang) for r in requests]
    _cancelled().difference_update(k.digest for k in keys)  # asked again: an earlier cancel no longer holds
    _submit(lm, requests, BATCH, batch_tag(relation, config))
    st.session_state.setdefault(BATCHES, {})[batch_tag(relation, config)] = keys


def watch_batch(lm: LanguageModel, factset: FactSet, relation: str, langs: Sequence[str], config: AttributionConfig,
                max_facts: int | None, key: str) -> None:
    """While prompts of the relation's batch wait in the queue (queued by any session), the watching fragment;
    once the batch this session started is over, what it did."""
    tag = batch_tag(relation, config)
    mine = st.session_state.setdefault(BATCHES, {})
    if tag not in mine and not queue().tagged(lm, tag):
        return
    keys = mine.get(tag) or [ResultKey.of(lm, r.prompt, r.config, r.lang)
                             for r in _relation_requests(lm, factset, relation, langs, config, max_facts)]
    standing = watch(lm, keys, config, key, f"the batch of {relation}")
    if tag in mine and not standing.waiting:
        del mine[tag]
        st.success(f"Batch done: {standing.stored} of {standing.total} prompt(s) stored, "
                   f"{len(standing.failed)} failed.")


def _relation_requests(lm: LanguageModel, factset: FactSet, relation: str, langs: Sequence[str],
                       config: AttributionConfig, max_facts: int | None, record: bool = False) -> list[Request]:
    """The batch's prompts that can be built; with ``record``, the others are recorded as failures."""
    requests = []
    for task in plan(factset, langs, [relation], max_facts):
        try:
            prompt = lm.prompt(task.template, task.subject, task.object)
        except KNError as exc:
            if record:
                store().record_failure(Failure(lm.name, model_fingerprint(lm), task.fact_id, task.lang,
                                               task.template, config.baseline, config.steps, config.rule, str(exc)))
            continue
        requests.append(Request(prompt, config, task.lang, task.fact_id))
    return requests


# -- submitting and watching ---------------------------------------------------------------------------
def _cancelled() -> set[str]:
    return st.session_state.setdefault(CANCELLED, set())


def _submit(lm: LanguageModel, requests: Sequence[Request], priority: int = PAGE, tag: str = "") -> None:
    if requests:
        queue().submit(lm, requests, priority, tag)
        worker(lm).wake()


def watch(lm: LanguageModel, keys: Keys, config: AttributionConfig, key: str, what: str,
          partial: Callable[[], None] | None = None, standing: Standing | None = None) -> Standing:
    """Draw the watching fragment of ``keys`` (see the module docstring); ``partial`` draws the results stored
    so far. ``standing`` is where they stood when the page decided to watch them (looked up when not given): the
    fragment refreshes from that same snapshot, so work finished in between still brings the full page back.
    Returns where they stood when the page ran."""
    standing = standing if standing is not None else queue().standing(lm, keys)
    refreshing = standing.waiting > 0

    def body() -> None:
        now = queue().standing(lm, keys)
        if refreshing and (now.complete or not now.waiting):
            st.rerun()  # everything stored (or nothing waits any more): the page runs again in full
        _status(lm, now, keys, config, key, what)
        if partial is not None:
            partial()

    fragment_here(body, WATCH_S if refreshing else None)
    return standing


def _status(lm: LanguageModel, standing: Standing, keys: Keys, config: AttributionConfig, key: str,
            what: str) -> None:
    if standing.waiting:
        running = worker(lm).running()
        # the share done of the piece the worker is computing, when it is one of ours
        current = running.fraction if running is not None and running.key in {k.digest for k in keys} else 0.0
        fraction = (standing.stored + current) / max(1, standing.total)
        st.progress(min(1.0, fraction), text=(
            f"Computing {what} in the background: {standing.stored} of {standing.total} stored{_ahead(standing)}"
            f"{_left(lm, standing, config)}. The page stays usable; results appear here as they are stored."))
        st.button("Cancel", key=f"{key}_cancel", on_click=_cancel, args=(keys,))
    elif standing.failed:
        st.warning(f"{standing.stored} of {standing.total} of {what} stored; {len(standing.failed)} failed:")
    elif not standing.complete:
        st.info(f"{standing.total - standing.stored} of {what} not computed: cancelled.")
        st.button("Compute them", key=f"{key}_again", on_click=_again, args=(keys,))
    for reason in standing.failed.values():
        st.error(f"Failed: {plain(reason)}")
    if standing.failed:
        st.button("Try again", key=f"{key}_retry", on_click=_retry, args=(lm, keys))


def _ahead(standing: Standing) -> str:
    return f" ({standing.ahead} queued earlier go first)" if standing.ahead else ""


def _left(lm: LanguageModel, standing: Standing, config: AttributionConfig) -> str:
    """" — about 2 min left" at the worker's pace, counting the work ahead (until a pace is known, says so)."""
    busy = worker(lm)
    pace = busy.pace(config)
    if pace is None:
        return " — measuring the pace"
    running = busy.running()
    remaining = standing.ahead + standing.waiting - (running.fraction if running is not None else 0.0)
    return f" — about {duration(max(1.0, remaining * pace))} left"


def _cancel(keys: Keys) -> None:
    queue().cancel(keys)
    _cancelled().update(k.digest for k in keys)


def _again(keys: Keys) -> None:
    _cancelled().difference_update(k.digest for k in keys)


def _retry(lm: LanguageModel, keys: Keys) -> None:
    queue().retry(keys)
    worker(lm).wake()


def _partial(keys: Sequence[ResultKey], key: str) -> Callable[[], None]:
    """The results of ``keys`` stored so far: their prompt table and the heatmap of their mean."""

    def draw() -> None:
        results = [r for r in (store().get(k) for k in keys) if r is not None]
        if results:
            prompt_table(results)
            mean = np.mean([r.scores for r in results], axis=0)
            st.plotly_chart(figures.neuron_heatmap(mean, f"Attribution, mean over the {len(results)} of {len(keys)} "
                                                         "prompt(s) stored so far"), key=f"{key}_partial_heat")

    return draw
