"""The model room: loading (safetensors only, never remote code), hooks on named activation sites,
vocabulary helpers, weight fingerprints and one adapter per architecture (``adapters/``).

Nothing outside ``adapters/`` names an architecture. May import :mod:`kn_core.data` and the shared
top-level modules (errors, defaults, types).
"""
