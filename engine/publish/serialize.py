"""Deterministic byte encodings of published artefacts (the same bytes in memory and on disk)."""

from __future__ import annotations

import io
import json
from typing import Callable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from engine.core.hashing import canonical_json


ROW_GROUP_ROWS = 1024 * 1024   # pyarrow's default (largest) row group: the unit of a chunked write
_WRITE = {"compression": "zstd", "write_statistics": False, "store_schema": False}


def _arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    sink = io.BytesIO()
    pq.write_table(_arrow(frame), sink, **_WRITE)
    return sink.getvalue()


def parquet_bytes_chunked(rows: int, frame_of: Callable[[int, int], pd.DataFrame]) -> bytes:
    """The bytes :func:`parquet_bytes` gives for the whole table, written one row group at a time from
    ``frame_of(a, b)`` (rows [a, b)), so the whole table never exists in memory at once."""
    if rows <= ROW_GROUP_ROWS:
        return parquet_bytes(frame_of(0, rows))
    sink, writer = io.BytesIO(), None
    for a in range(0, rows, ROW_GROUP_ROWS):
        table = _arrow(frame_of(a, min(a + ROW_GROUP_ROWS, rows)))
        writer = writer or pq.ParquetWriter(sink, table.schema, **_WRITE)
        writer.write_table(table.cast(writer.schema))
    writer.close()
    return sink.getvalue()


def json_bytes(obj: object) -> bytes:
    return canonical_json(obj)


def jsonl_bytes(rows: list[dict]) -> bytes:
    return b"".join(canonical_json(r) + b"\n" for r in rows)


def read_jsonl(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
