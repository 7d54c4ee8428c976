"""Exporting the store: one row per stored result, as Parquet (with the score matrices) or CSV (without)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from kn_core.errors import StoreError
from kn_core.runs.store import ResultStore

FORMATS = ("parquet", "csv")
COLUMNS = ("key", "model", "fingerprint", "lang", "template", "subject", "object", "baseline", "steps",
           "engine", "layers", "method_version", "p_object", "n_layers", "d_ff", "created")


def export(store: ResultStore, out: str | os.PathLike, fmt: Literal["parquet", "csv"] = "parquet",
           model: str | None = None) -> Path:
    """Write the stored results (of ``model``, or all) as one row each.

    Parquet rows carry the scores (``scores``: float32 list, row-major [n_layers × d_ff]); CSV rows carry
    the key fields, P(object) and the shapes only. The file appears complete or not at all.
    """
    if fmt not in FORMATS:
        raise StoreError(f"unknown export format {fmt!r}; choose {' or '.join(FORMATS)}")
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    try:
        _write_table(partial, fmt, _batches(store, fmt == "parquet", model))
        os.replace(partial, out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise StoreError(f"cannot write the export {out}: {exc.strerror or exc}") from None
    return out


def _batches(store: ResultStore, with_scores: bool, model: str | None) -> Iterator[pa.RecordBatch]:
    schema = _schema(with_scores)
    for rows in store.rows(COLUMNS + (("scores",) if with_scores else ()), model):
        data = {name: [row[name] for row in rows] for name in COLUMNS}
        if with_scores:
            data["scores"] = [np.frombuffer(row["scores"], dtype=np.float32) for row in rows]
        yield pa.RecordBatch.from_pydict(data, schema=schema)


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
