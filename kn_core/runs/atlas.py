"""The atlas: precomputed results that ship with the repository, read as a read-only layer under the user's store.

A fresh machine's first look at every page shows real-model results with nothing computed: ``assets/atlas/``
holds, per model, the attributions of a fixed plan of bundled facts (:data:`kn_core.runs.atlas_plan.PLANS`) at
the default attribution settings, and the documents derived from them (suppression effects, the showcase).
``python -m kn_core atlas build`` computes them through the user's store (resumable) and writes the files.

Layout, per model (``assets/atlas/<model>/``), every file written deterministically (sorted, fixed compression
level, no time stamps), so that a rebuild changes exactly the files whose content changed:

- ``atlas.json``: the model's name, the sha256 of its safetensors weights (the store's fingerprint), the
  settings and the number of results;
- ``results.jsonl``: one line per result, sorted by key: every column of the store's ``results`` row but the
  score matrix, and the scale of that matrix;
- ``scores/<key>.xz``: the score matrix [n_layers, d_ff] quantised to 12 bits against its largest magnitude
  (q = round(s / scale) in −2047 … 2047, scale = max|s| / 2047, stored as little-endian int16 with the low and
  high bytes in two planes) and xz-compressed. What is dropped: each score is kept to within
  scale / 2 = max|s| / 4094 of its value (0.025 % of the top score, well below the quadrature's error,
  docs/performance.md), so any score below that in magnitude reads as 0. The build
  checks, for every result, that the coarse knowledge-neuron set (score > τ·max, τ of the language) is the
  same from the decoded matrix as from the full one, and keeps that result's full float32 matrix
  (``scores/<key>.f32.xz``) where it is not;
- ``documents.jsonl``: the derived documents (kind, key, payload), sorted.

An atlas model counts only when the model of that name installed here has exactly those weights (the sha256
of its safetensors files, cached as for the store's keys): different weights never see the atlas's
results. The user's store wins where both hold a key; nothing of the atlas is ever written into it.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import lzma
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from kn_core.errors import StoreError

log = logging.getLogger(__name__)

FORMAT = 2
ROOT = Path(__file__).resolve().parents[2] / "assets" / "atlas"
VARIABLE = "KN_EXPLORER_ATLAS"  # a folder, or "off"
PRESET = 9  # xz preset (part of the bytes: fixed)
QMAX = 2047
FIRST_LOOK = ("smollm2-135m", "gemma3-270m")  # whose documents (e.g. the showcase) come first, when both are used
ROW_COLUMNS = ("key", "model", "fingerprint", "lang", "template", "subject", "object", "baseline", "steps", "rule",
               "layers", "method_version", "engine", "p_object", "n_layers", "d_ff", "record", "created")
_VECTOR_COLUMNS = ("convergence_delta", "baseline_probs")


# -- encoding -------------------------------------------------------------------------------------
def _pack(data: bytes, width: int) -> bytes:
    """``data``'s bytes in ``width`` planes (byte 0 of every value, then byte 1, …), xz-compressed: the high bytes
    of small numbers are nearly constant and compress well apart from the noisy low ones."""
    planes = np.frombuffer(data, dtype=np.uint8).reshape(-1, width).T
    return lzma.compress(np.ascontiguousarray(planes).tobytes(), format=lzma.FORMAT_XZ, preset=PRESET)


def _unpack(blob: bytes, width: int) -> bytes:
    planes = np.frombuffer(lzma.decompress(blob), dtype=np.uint8).reshape(width, -1)
    return np.ascontiguousarray(planes.T).tobytes()


def encode_scores(scores: np.ndarray) -> tuple[bytes, float]:
    """The 12-bit quantisation of ``scores`` (packed and compressed) and its scale (see the module docstring)."""
    scores = np.asarray(scores, dtype=np.float32)
    peak = float(np.max(np.abs(scores))) if scores.size else 0.0
    scale = peak / QMAX if peak > 0 and np.isfinite(peak) else 1.0
    quantised = np.clip(np.rint(scores.astype(np.float64) / scale), -QMAX, QMAX).astype("<i2")
    return _pack(quantised.tobytes(), 2), scale


def decode_scores(blob: bytes, scale: float, shape: tuple[int, int]) -> np.ndarray:
    """The float32 score matrix of :func:`encode_scores`' output."""
    quantised = np.frombuffer(_unpack(blob, 2), dtype="<i2")
    return (quantised.astype(np.float32) * np.float32(scale)).reshape(shape)


def encode_exact(scores: np.ndarray) -> bytes:
    """``scores`` as float32, packed and compressed (a result whose knowledge neurons quantisation would change)."""
    return _pack(np.ascontiguousarray(scores, dtype="<f4").tobytes(), 4)


def decode_exact(blob: bytes, shape: tuple[int, int]) -> np.ndarray:
    return np.frombuffer(_unpack(blob, 4), dtype="<f4").reshape(shape).copy()


def coarse_set(scores: np.ndarray, tau: float) -> set[tuple[int, int]]:
    """The neurons whose score exceeds τ·max (the coarse knowledge neurons of one prompt)."""
    peak = float(scores.max()) if scores.size else 0.0
    if peak <= 0:
        return set()
    layers, indices = np.nonzero(scores > tau * peak)
    return set(zip(layers.tolist(), indices.tolist()))


# -- one model's atlas ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelAtlas:
    """One model's atlas folder, read once (rows without their score matrices, and the documents)."""

    folder: Path
    name: str
    fingerprint: str
    settings: dict
    rows: dict[str, dict]  # key → row (the store's columns but the blobs, plus "scale" and "exact")
    documents: dict[tuple[str, str], dict]
    _decoded: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def read(cls, folder: Path) -> "ModelAtlas":
        try:
            meta = json.loads((folder / "atlas.json").read_text(encoding="utf-8"))
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, this version reads {FORMAT}")
            rows = {}
            for line in _lines(folder / "results.jsonl"):
                row = json.loads(line)
                rows[row["key"]] = row
            documents = {}
            for line in _lines(folder / "documents.jsonl"):
                doc = json.loads(line)
                documents[(doc["kind"], doc["key"])] = doc["payload"]
            return cls(folder, str(meta["name"]), str(meta["fingerprint"]), dict(meta.get("settings", {})), rows,
                       documents)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"the atlas folder {folder} is damaged ({exc}); restore it from the repository "
                             f"(git checkout -- {folder}) or set {VARIABLE}=off") from None

    def scores(self, key: str) -> np.ndarray:
        """The score matrix [n_layers, d_ff] of ``key`` (float32, read-only), decoded once per process: a page
        that reads every result (neuron search, the relation overview) pays the decompression once."""
        found = self._decoded.get(key)
        if found is None:
            found = self._decode(key)
            found.setflags(write=False)
            self._decoded[key] = found
        return found

    def warm(self) -> None:
        """Decode every score matrix now (xz releases the GIL: a background thread of the app does this while
        the model loads, so the first page that reads them all does not wait)."""
        for key in sorted(self.rows):
            try:
                self.scores(key)
            except StoreError as exc:  # reported again, with its page, when a page reads it
                log.warning("%s", exc)

    def _decode(self, key: str) -> np.ndarray:
        row = self.rows[key]
        shape = (int(row["n_layers"]), int(row["d_ff"]))
        try:
            if row.get("exact"):
                return decode_exact((self.folder / "scores" / f"{key}.f32.xz").read_bytes(), shape)
            return decode_scores((self.folder / "scores" / f"{key}.xz").read_bytes(), float(row["scale"]), shape)
        except (OSError, ValueError, lzma.LZMAError) as exc:
            raise StoreError(f"the atlas result {key[:12]} in {self.folder} is damaged ({exc}); restore the folder "
                             f"from the repository (git checkout -- {self.folder}) or set {VARIABLE}=off") from None

    def store_row(self, key: str, columns: Iterable[str] | None = None) -> dict:
        """The row of ``key`` as the store's ``results`` table has it (blobs as float32 bytes)."""
        row = self.rows[key]
        wanted = tuple(columns) if columns is not None else (*ROW_COLUMNS, "scores", *_VECTOR_COLUMNS)
        out = {}
        for column in wanted:
            if column == "scores":
                out[column] = self.scores(key).astype("<f4").tobytes()
            elif column in _VECTOR_COLUMNS:
                out[column] = np.asarray(row[column], dtype="<f4").tobytes()
            else:
                out[column] = row[column]
        return out


def _lines(path: Path) -> Iterator[str]:
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield line


# -- the layer ------------------------------------------------------------------------------------
def default_root() -> Path | None:
    """``$KN_EXPLORER_ATLAS`` (a folder; ``off`` for none), else the repository's ``assets/atlas``."""
    value = os.environ.get(VARIABLE, "").strip()
    if value.lower() == "off":
        return None
    return Path(value).expanduser() if value else ROOT


def installed_fingerprint(name: str) -> str | None:
    """The sha256 of the safetensors weights of the model ``name`` resolves to here (None when it resolves to no
    local folder, or the folder has no safetensors)."""
    from kn_core.errors import KNError
    from kn_core.model.fingerprint import folder_fingerprint
    from kn_core.model.loading import resolve

    try:
        _, folder = resolve(name)
    except KNError:
        return None
    return None if folder is None else folder_fingerprint(folder)


class Atlas:
    """Every model atlas under ``root`` whose weights match the model installed here (checked once per model
    name, lazily: the first question about a model hashes, or reads the cached hash of, its installed weights)."""

    def __init__(self, root: Path | None):
        self.root = root
        self._models: dict[str, ModelAtlas] = {}
        self._active: dict[str, bool] = {}
        self._lock = threading.Lock()
        self.problems: dict[str, str] = {}  # folder → why it is not used (damaged, another format)
        if root is not None and root.is_dir():
            for folder in sorted(p for p in root.iterdir() if (p / "atlas.json").is_file()):
                try:
                    model = ModelAtlas.read(folder)
                except StoreError as exc:  # one damaged folder costs its own results, never the store's
                    self.problems[str(folder)] = str(exc)
                    log.warning("%s", exc)
                    continue
                self._models[model.name] = model

    @classmethod
    def default(cls) -> "Atlas":
        return cls(default_root())

    @property
    def names(self) -> tuple[str, ...]:
        """Every model the atlas holds, matching here or not."""
        return tuple(self._models)

    def model(self, name: str) -> ModelAtlas | None:
        """The atlas of ``name`` when the weights installed here are the atlas's, else None."""
        atlas = self._models.get(name)
        if atlas is None:
            return None
        with self._lock:
            if name not in self._active:
                found = installed_fingerprint(name)
                self._active[name] = found == atlas.fingerprint
                if found is not None and not self._active[name]:
                    log.warning("the atlas of %s is not used: the weights installed here (sha256 %s…) are not "
                                "the ones it was computed on (%s…)", name, found[:12], atlas.fingerprint[:12])
            return atlas if self._active[name] else None

    def active(self) -> list[ModelAtlas]:
        """The model atlases used here, :data:`FIRST_LOOK` models first."""
        order = sorted(self._models, key=lambda n: (FIRST_LOOK.index(n) if n in FIRST_LOOK else len(FIRST_LOOK), n))
        return [m for m in (self.model(name) for name in order) if m is not None]

    def find(self, key: str) -> ModelAtlas | None:
        """The active model atlas holding result ``key``."""
        for name, atlas in self._models.items():
            if key in atlas.rows:
                return self.model(name)
        return None

    def document(self, kind: str, key: str) -> dict | None:
        """A document of the first active model atlas that holds (kind, key)."""
        for atlas in self.active():
            if (kind, key) in atlas.documents:
                return atlas.documents[(kind, key)]
        return None

    def info(self) -> dict:
        """Per model: results, documents, whether its weights match here; per unusable folder: why."""
        found = {name: {"results": len(m.rows), "documents": len(m.documents), "fingerprint": m.fingerprint,
                        "used": self.model(name) is not None, "folder": str(m.folder)}
                 for name, m in self._models.items()}
        found.update({folder: {"used": False, "problem": problem} for folder, problem in self.problems.items()})
        return found


# -- writing --------------------------------------------------------------------------------------
def _dump(payload: object) -> str:
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` atomically, leaving an identical file untouched (its time stamps too)."""
    if path.exists() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def write_model_atlas(folder: Path, name: str, fingerprint: str, settings: dict, rows: list[dict],
                      documents: list[tuple[str, str, dict]], taus: dict[str, float]) -> dict:
    """Write one model's atlas (see the module docstring) from store rows (dicts with the ``results`` columns,
    ``scores`` and the two vectors as float32 bytes). Files of results no longer listed are removed.
    Returns counts: results, exact (kept as float32), bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    lines, kept, exact = [], set(), 0
    for row in sorted(rows, key=lambda r: r["key"]):
        key, shape = row["key"], (int(row["n_layers"]), int(row["d_ff"]))
        scores = np.frombuffer(row["scores"], dtype="<f4").reshape(shape)
        blob, scale = encode_scores(scores)
        tau = taus.get(row["lang"], 0.3)
        is_exact = coarse_set(decode_scores(blob, scale, shape), tau) != coarse_set(scores, tau)
        if is_exact:
            exact += 1
            file = f"{key}.f32.xz"
            _write_bytes(folder / "scores" / file, encode_exact(scores))
        else:
            file = f"{key}.xz"
            _write_bytes(folder / "scores" / file, blob)
        kept.add(file)
        entry = {column: row[column] for column in ROW_COLUMNS}
        for column in _VECTOR_COLUMNS:
            entry[column] = np.frombuffer(row[column], dtype="<f4").astype(float).tolist()
        entry.update(scale=scale, exact=is_exact)
        lines.append(_dump(entry))
    for stale in (folder / "scores").glob("*") if (folder / "scores").is_dir() else ():
        if stale.name not in kept:
            stale.unlink()
    _write_bytes(folder / "results.jsonl", "".join(f"{line}\n" for line in lines).encode("utf-8"))
    docs = sorted((_dump({"kind": k, "key": key, "payload": payload}) for k, key, payload in documents))
    _write_bytes(folder / "documents.jsonl", "".join(f"{line}\n" for line in docs).encode("utf-8"))
    meta = {"format": FORMAT, "name": name, "fingerprint": fingerprint, "settings": settings, "results": len(lines),
            "documents": len(docs)}
    _write_bytes(folder / "atlas.json",
                 (json.dumps(meta, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode())
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return {"results": len(lines), "exact": exact, "bytes": size}
