"""Error types of KN Explorer.

Every failure caused by user input derives from :class:`KNError`, so the CLI and the app can show the
message (which always names the field and the fix) instead of a traceback.
"""
from __future__ import annotations


class KNError(Exception):
    """Base class: a problem the user can fix; the message says how."""


class InputError(KNError, ValueError):
    """A user-supplied value (template, subject, object, number, language) is invalid."""

    def __init__(self, field: str, message: str):
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")

    def __reduce__(self):  # survive pickling (worker processes, Ray tasks)
        return type(self), (self.field, self.message)


class TemplateError(InputError):
    """A template lacks a slot, has several [Y], or cannot be used with this architecture."""

    def __init__(self, message: str, field: str = "template"):
        super().__init__(field, message)

    def __reduce__(self):
        return type(self), (self.message, self.field)


class ModelLoadError(KNError):
    """A model id or folder cannot be loaded (missing, not a model, no safetensors weights, too large)."""


class UnsupportedArchitectureError(ModelLoadError):
    """The checkpoint's ``config.model_type`` has no adapter."""


class DataError(KNError):
    """A fact set or data file is malformed; the message names the file and line."""

    def __init__(self, path: str, line: int | None, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):
        return DataError, (self.path, self.line, self.reason)


class StoreError(KNError):
    """The result store is unreadable, corrupt, foreign or not writable."""
