"""Deterministic byte encodings of published artefacts (the same bytes in memory and on disk)."""

from __future__ import annotations

import io
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from engine.hashing import canonical_json


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata(None)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", write_statistics=False, store_schema=False)
    return sink.getvalue()


def json_bytes(obj: object) -> bytes:
    return canonical_json(obj)


def jsonl_bytes(rows: list[dict]) -> bytes:
    return b"".join(canonical_json(r) + b"\n" for r in rows)


def read_jsonl(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
