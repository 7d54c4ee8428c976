"""Exporting the store: one row per stored result, as Parquet (with the score matrices) or CSV (without)."""
from __future__ import annotations

import os
import secrets
import sqlite3
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from kn_core.errors import InputError, StoreError
from kn_core.runs.store import ResultStore

FORMATS = ("parquet", "csv")
COLUMNS = ("key", "model", "fingerprint", "lang", "template", "subject", "object", "baseline", "steps",
           "rule", "engine", "layers", "method_version", "p_object", "n_layers", "d_ff", "created")


def export(store: ResultStore, out: str | os.PathLike, fmt: Literal["parquet", "csv"] = "parquet",
           model: str | None = None) -> Path:
    """Write the stored results (of ``model``, or all) as one row each.

    Parquet rows carry the scores (``scores``: float32 list, row-major [n_layers × d_ff]); CSV rows carry
    the key fields, P(object) and the shapes only. The file appears complete or not at all: it is written to a
    temporary file beside ``out`` and moved over it in one step. A damaged stored row raises
    :class:`StoreError` naming it, and nothing is written (a partial export would look complete).
    """
    if fmt not in FORMATS:
        raise StoreError(f"unknown export format {fmt!r}; choose {' or '.join(FORMATS)}")
    if model is not None:
        models = store.info()["models"]
        if model not in models:
            raise InputError("model", f"no stored result of {model!r} in {store.path}, so nothing was exported; "
                                      f"models in the store: {', '.join(models) or 'none'}")
    out = Path(out)
    partial = out.with_name(f".{out.name}.{secrets.token_hex(6)}.partial")
    try:
        _write_table(partial, fmt, _batches(store, fmt == "parquet", model))
        os.replace(partial, out)
    except OSError as exc:
        raise StoreError(f"cannot write the export {out}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return out


def _record(row: sqlite3.Row | dict, with_scores: bool) -> dict:
    """One stored row as the export's columns; raises ValueError when its score matrix has the wrong size."""
    record = {name: row[name] for name in COLUMNS}
    if with_scores:
        scores, shape = row["scores"], (row["n_layers"], row["d_ff"])
        if not isinstance(scores, bytes) or not all(isinstance(n, int) for n in shape) \
                or len(scores) != 4 * shape[0] * shape[1]:
            raise ValueError(f"its score matrix is not {shape[0]} × {shape[1]} float32 values")
        record["scores"] = np.frombuffer(scores, dtype=np.float32)
    return record


def _problem(row: sqlite3.Row | dict, with_scores: bool, schema: pa.Schema) -> str | None:
    """Why one stored row cannot be exported, or None."""
    try:
        pa.RecordBatch.from_pylist([_record(row, with_scores)], schema=schema)
    except (ValueError, TypeError, pa.ArrowException) as exc:
        return str(exc)
    return None


def _batch(store: ResultStore, rows: list[sqlite3.Row] | list[dict], with_scores: bool) -> pa.RecordBatch:
    """The rows as one record batch; a damaged row raises :class:`StoreError` with its key and the remedy."""
    schema = _schema(with_scores)
    try:
        return pa.RecordBatch.from_pylist([_record(row, with_scores) for row in rows], schema=schema)
    except (ValueError, TypeError, pa.ArrowException) as exc:
        row, problem = next(((row, found) for row in rows if (found := _problem(row, with_scores, schema))),
                            (rows[0], str(exc)))
        raise StoreError(f"the stored result {str(row['key'])[:12]} of {row['model']!r} in {store.path} is "
                         f"damaged ({problem}); nothing was exported: prune that model (`store prune --model`) "
                         "or export the others with --model") from None


def _batches(store: ResultStore, with_scores: bool, model: str | None) -> Iterator[pa.RecordBatch]:
    for rows in store.rows(COLUMNS + (("scores",) if with_scores else ()), model):
        yield _batch(store, rows, with_scores)


def _schema(with_scores: bool) -> pa.Schema:
    types = {"steps": pa.int32(), "method_version": pa.int32(), "n_layers": pa.int32(), "d_ff": pa.int32(),
             "p_object": pa.float64()}
    fields = [pa.field(name, types.get(name, pa.string())) for name in COLUMNS]
    if with_scores:
        fields.append(pa.field("scores", pa.list_(pa.float32())))
    return pa.schema(fields)


def _write_table(path: Path, fmt: str, batches: Iterator[pa.RecordBatch]) -> None:
    schema = _schema(fmt == "parquet")
    writer = pq.ParquetWriter(path, schema) if fmt == "parquet" else pa_csv.CSVWriter(str(path), schema)
    with writer:
        for batch in batches:
            writer.write_batch(batch)
