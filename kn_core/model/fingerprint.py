"""Model fingerprints: the sha256 of a model's weights, the part of a stored result's key that tells two
checkpoints of the same name apart.

Hashing a real model's weight files costs seconds per process (SmolLM2-135M: 517 MB, about 1.3 s; Gemma 3:
1.1 GB), so the hash of a folder's files is remembered, in the process and across processes in
``HOME/fingerprints.json``, under the files' identity: resolved path, size, modification and status-change
times (ns) and inode. Rewriting, replacing or copying a file changes one of them, and the files are hashed
again. The cache is only a shortcut: an unreadable or damaged cache file is ignored (and rewritten).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from kn_core.home import home_dir

if TYPE_CHECKING:  # typing only: the model room is loaded by whoever calls
    from kn_core.model.loading import LanguageModel

log = logging.getLogger(__name__)

CACHE_FILE = "fingerprints.json"
CACHE_ENTRIES = 256  # the most recent folders' hashes kept on disk
_FINGERPRINT_LOCK = threading.Lock()
_FILE_FINGERPRINTS: dict[str, str] = {}
_MODULE_FINGERPRINTS: "weakref.WeakKeyDictionary[object, str]" = weakref.WeakKeyDictionary()


def _weight_files(lm: LanguageModel) -> list[Path]:
    return sorted(Path(lm.source).glob("*.safetensors")) if lm.source is not None else []


def _hash_files(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode("utf-8") + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _identity(files: list[Path]) -> str:
    """What a folder's hash is remembered under: per file its resolved path, size, times and inode."""
    stats = [(str(f.resolve()), f.stat()) for f in files]
    return json.dumps([[name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino] for name, st in stats])


def _read_cache(path: Path) -> dict[str, str]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        if not isinstance(exc, FileNotFoundError):
            log.debug("ignoring the fingerprint cache %s (%s)", path, exc)
        return {}
    if not isinstance(entries, dict):
        return {}
    return {k: v for k, v in entries.items() if isinstance(k, str) and isinstance(v, str) and len(v) == 64}


def _write_cache(path: Path, identity: str, digest: str) -> None:
    """Add one entry (atomically: a concurrent reader sees the old file or the new one, never half of one)."""
    entries = _read_cache(path)
    entries.pop(identity, None)
    entries[identity] = digest
    entries = dict(list(entries.items())[-CACHE_ENTRIES:])
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".fingerprints-", dir=path.parent)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(entries, out)
        os.replace(temporary, path)
    except OSError as exc:
        log.debug("could not write the fingerprint cache %s (%s)", path, exc)
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)


def _files_fingerprint(files: list[Path]) -> str:
    identity = _identity(files)
    if identity not in _FILE_FINGERPRINTS:
        cache = home_dir() / CACHE_FILE
        digest = _read_cache(cache).get(identity)
        if digest is None:
            digest = _hash_files(files)
            _write_cache(cache, identity, digest)
        _FILE_FINGERPRINTS[identity] = digest
    return _FILE_FINGERPRINTS[identity]


def _hash_state_dict(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\0".encode("utf-8"))
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def folder_fingerprint(folder: str | os.PathLike) -> str | None:
    """sha256 of the safetensors files in ``folder`` (remembered like :func:`model_fingerprint`'s), None when
    it holds none: what a model loaded from that folder would be fingerprinted as, without loading it."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return None
    with _FINGERPRINT_LOCK:
        return _files_fingerprint(files)


def model_fingerprint(lm: LanguageModel) -> str:
    """sha256 of the model's weights: its safetensors files when it was loaded from a folder (remembered by
    the files' identity, in the process and in ``HOME/fingerprints.json``), else of its state_dict tensors
    (cached per model object)."""
    files = _weight_files(lm)
    with _FINGERPRINT_LOCK:
        if files:
            return _files_fingerprint(files)
        if lm.model not in _MODULE_FINGERPRINTS:
            _MODULE_FINGERPRINTS[lm.model] = _hash_state_dict(lm.model)
        return _MODULE_FINGERPRINTS[lm.model]
