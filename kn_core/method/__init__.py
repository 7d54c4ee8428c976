"""The method room (docs/method.md §2–§5): knowledge-neuron selection, interventions, ``locate``,
language-independent neurons, degenerate neurons, fact-checking and accuracy.

May import :mod:`kn_core.attribution`, :mod:`kn_core.model`, :mod:`kn_core.data` and the shared
top-level modules; never the store, the runs or the app.
"""
