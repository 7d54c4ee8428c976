"""Shareable views: a page's model, relation, fact, language and thresholds live in the URL's query string.

The URL is read at the start of each run. Parameters that differ from what this session last wrote came from
outside (a pasted link, a page link, a reload) and are put into the page's widgets before they are drawn;
an invalid value gives one warning naming it and the page opens with its defaults. After drawing, the page
writes its current view back, so the address bar always holds a link to what is shown. Where the link says
nothing, the showcase (``python -m kn_core showcase``) gives the page's defaults.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence, TypeVar

import streamlit as st

from kn_core.app.guard import plain
from kn_core.data import FactSet
from kn_core.errors import InputError, KNError
from kn_core.runs.queries import Showcase

SEEN, INCOMING = "_link_seen", "_link_incoming"
WARNED = "_link_warned"  # the last link's warning: (its widget keys, the message, the view it opened on)
Parser = Callable[[str, dict], object]  # (text, values parsed so far) -> widget value; raises KNError
T = TypeVar("T")


def open_link() -> dict[str, str]:
    """Once per run (app.py): the URL's parameters if they came from outside this session, else {}."""
    current = st.query_params.to_dict()
    incoming = current if current and current != st.session_state.get(SEEN) else {}
    st.session_state[SEEN] = current
    st.session_state[INCOMING] = incoming
    return incoming


def incoming() -> dict[str, str]:
    return st.session_state.get(INCOMING, {})


def restore(widgets: Mapping[str, tuple[str, Parser]], defaults: Mapping[str, str] | None = None) -> None:
    """Put the link's values (else ``defaults``, for widgets not drawn yet) into the page's widgets, in order;
    ``widgets`` maps a parameter to (widget key, parser). Invalid values are listed in one warning."""
    given = incoming()
    source = given if any(name in given for name in widgets) else {
        name: value for name, value in (defaults or {}).items()
        if name in widgets and widgets[name][0] not in st.session_state}
    parsed: dict[str, object] = {}
    problems = []
    for name, (key, parse) in widgets.items():
        if name not in source:
            continue
        try:
            parsed[name] = st.session_state[key] = parse(source[name], parsed)
        except (KNError, ValueError) as exc:
            problems.append(f"{name}={source[name]!r}: {exc}")
    keys = tuple(key for key, _ in widgets.values())
    if problems and source is given:
        warning = ("This link has values the page cannot show; it opens with its defaults for them. "
                   + plain("; ".join(problems)))
        st.session_state[WARNED] = (keys, warning, None)
        st.warning(warning)
        return
    if source is given and given:
        st.session_state.pop(WARNED, None)  # a new link without problems
    _warn(keys)


def _warn(keys: tuple[str, ...]) -> None:
    """The link's warning on the later runs of its page (a page runs again when its measurements are done)
    until one of its widgets changes from the view the link opened on."""
    warned = st.session_state.get(WARNED)
    if warned is None or warned[0] != keys:
        return
    view = {key: st.session_state.get(key) for key in keys}
    if warned[2] is None:  # the link's run drew the widgets: the view it opened on
        st.session_state[WARNED] = (keys, warned[1], view)
    elif warned[2] != view:
        del st.session_state[WARNED]
        return
    st.warning(warned[1])


def share(**values: object) -> None:
    """Write the page's view (and the sidebar's model, when it is a listed one) into the URL."""
    params = {name: str(value) for name, value in values.items() if value is not None}
    if params != st.query_params.to_dict():
        st.query_params.from_dict(params)
    st.session_state[SEEN] = params


def showcase_defaults(showcase: Showcase | None, page: str, model_name: str) -> dict[str, str]:
    """A page's defaults from the showcase when it was chosen on the shown model: the Fact browser, the model
    comparison and the relation overview open on its fact (the Fact-check page on its relation and language),
    the language page on its fact with shared neurons."""
    if showcase is None or showcase.model != model_name:
        return {}
    fact: dict[str, str | None] = {"relation": showcase.relation, "fact": showcase.fact, "lang": showcase.lang}
    language: dict[str, str | None] = {"relation": showcase.language_relation, "fact": showcase.language_fact}
    pages: dict[str, dict[str, str | None]] = {
        "fact_browser": fact, "compare_models": fact, "relation_overview": fact,
        "fact_check": {"relation": showcase.relation, "lang": showcase.lang},
        "languages": language if showcase.language_fact else {}}
    chosen = pages.get(page, {})
    return {name: value for name, value in chosen.items() if value is not None}


def initial(key: str, value: T) -> T | None:
    """A widget's initial ``value``, or None when its key already holds one (from a link or an earlier run):
    Streamlit warns when a widget gets both."""
    return None if key in st.session_state else value


# -- parsers ---------------------------------------------------------------------------------------
def number(low: float, high: float, kind: type = float) -> Parser:
    """A number in [low, high] (``kind`` int or float)."""
    def parse(text: str, _: dict) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise InputError("link", f"not a{'n integer' if kind is int else ' number'}") from None
        if not low <= value <= high:
            raise InputError("link", f"must lie in [{low}, {high}]")
        return value
    return parse


def relation(factset: FactSet) -> Parser:
    return lambda text, _: factset.relation(text).id


def fact(factset: FactSet, relation_param: str = "relation") -> Parser:
    """A fact id of the bundled set, of the link's relation when it gives one."""
    def parse(text: str, parsed: dict) -> object:
        found = factset.fact(text)
        if relation_param not in parsed:
            raise InputError("link", f"give the fact's relation too ({relation_param}={found.relation})")
        if found.relation != parsed[relation_param]:
            raise InputError("link", f"fact {text!r} is not of relation {parsed[relation_param]}")
        return found
    return parse


def count(options: Sequence[int | None]) -> Parser:
    """One of ``options``, a count or ``all`` (None)."""
    def parse(text: str, _: dict) -> int | None:
        names = {"all" if n is None else str(n): n for n in options}
        if text not in names:
            raise InputError("link", f"choose one of {', '.join(names)}")
        return names[text]
    return parse


def choice(options: list[str]) -> Parser:
    def parse(text: str, _: dict) -> str:
        if text not in options:
            raise InputError("link", f"choose one of {', '.join(options)}")
        return text
    return parse
