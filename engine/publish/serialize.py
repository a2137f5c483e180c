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


# The footer's created_by names the pyarrow that wrote the file: left as written, every pyarrow release changed
# every published digest (26.0.1 wrote 25.0.1's bytes but for its version string, and a fresh install's pinned
# bundle and S6 digests no longer matched). Our bytes carry one label, the release the pins were made with.
CREATED_BY = b"parquet-cpp-arrow version 25.0.1"
_WRITER = b"parquet-cpp-arrow version "


def _arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)


def _labelled(data: bytes) -> bytes:
    """``data`` (a whole parquet file) with its footer's created_by (a compact-thrift string: one byte of field
    header, a one-byte length, the text) replaced by CREATED_BY, and the footer length mended. A footer not laid
    out so (a pyarrow that labels otherwise) is left as written: the pinned digests of the tests say so, a run
    does not fail for a label."""
    footer_len = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - footer_len
    meta = data[start:-8]
    at = meta.find(_WRITER)
    if at < 2 or meta.find(_WRITER, at + 1) >= 0 or meta[at - 1] >= 0x80:
        return data
    end = at + meta[at - 1]
    meta = meta[:at - 1] + bytes([len(CREATED_BY)]) + CREATED_BY + meta[end:]
    return data[:start] + meta + len(meta).to_bytes(4, "little") + data[-4:]


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    sink = io.BytesIO()
    pq.write_table(_arrow(frame), sink, **_WRITE)
    return _labelled(sink.getvalue())


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
    return _labelled(sink.getvalue())


def json_bytes(obj: object) -> bytes:
    return canonical_json(obj)


def jsonl_bytes(rows: list[dict]) -> bytes:
    return b"".join(canonical_json(r) + b"\n" for r in rows)


def read_jsonl(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
