"""Model fingerprints: the sha256 of a model's weights, the part of a stored result's key that tells two
checkpoints of the same name apart."""
from __future__ import annotations

import hashlib
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # typing only: the model room is loaded by whoever calls
    from kn_core.model.loading import LanguageModel

_FINGERPRINT_LOCK = threading.Lock()
_FILE_FINGERPRINTS: dict[tuple, str] = {}
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


def _hash_state_dict(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\0".encode("utf-8"))
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def model_fingerprint(lm: LanguageModel) -> str:
    """sha256 of the model's weights: its safetensors files when it was loaded from a folder (cached per
    process by path, size and modification time), else of its state_dict tensors (cached per model object)."""
    files = _weight_files(lm)
    with _FINGERPRINT_LOCK:
        if files:
            signature = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
            if signature not in _FILE_FINGERPRINTS:
                _FILE_FINGERPRINTS[signature] = _hash_files(files)
            return _FILE_FINGERPRINTS[signature]
        if lm.model not in _MODULE_FINGERPRINTS:
            _MODULE_FINGERPRINTS[lm.model] = _hash_state_dict(lm.model)
        return _MODULE_FINGERPRINTS[lm.model]
