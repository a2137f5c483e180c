"""Published parquet bytes do not depend on the pyarrow release that wrote them: the footer's created_by carries one
label (engine.publish.serialize.CREATED_BY), so a fresh install of a newer pyarrow keeps every digest."""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings, strategies as st

from engine.publish import serialize
from engine.publish.serialize import CREATED_BY, _WRITE, parquet_bytes, parquet_bytes_chunked


def _written_by(frame: pd.DataFrame, version: bytes) -> bytes:
    """What a pyarrow calling itself ``version`` writes: the same file with that created_by, footer length mended."""
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None), sink, **_WRITE)
    data = sink.getvalue()
    own = f"parquet-cpp-arrow version {pa.__version__}".encode()
    footer_len = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - footer_len
    meta = data[start:-8]
    at = meta.index(own)
    meta = meta[:at - 1] + bytes([len(b"parquet-cpp-arrow version " + version)]) + \
        b"parquet-cpp-arrow version " + version + meta[at + len(own):]
    return data[:start] + meta + len(meta).to_bytes(4, "little") + data[-4:]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**9), st.sampled_from(["FR", "US", "NZ"]), st.floats(0, 1)), min_size=1,
                max_size=40),
       st.sampled_from([b"15.0.0", b"25.0.1", b"26.0.1", b"31.12.105", b"100.0.0-SNAPSHOT"]))
def test_any_writer_release_gives_the_same_labelled_bytes(rows, version):
    frame = pd.DataFrame(rows, columns=["merchant_id", "country_iso", "share"])
    labelled = serialize._labelled(_written_by(frame, version))
    assert labelled == parquet_bytes(frame)
    meta = pq.read_metadata(pa.BufferReader(labelled))
    assert meta.created_by == CREATED_BY.decode() and meta.num_rows == len(frame)
    assert pq.read_table(pa.BufferReader(labelled)).to_pandas().equals(frame)
    assert serialize._labelled(labelled) == labelled


def test_a_chunked_write_is_labelled_too(monkeypatch):
    monkeypatch.setattr(serialize, "ROW_GROUP_ROWS", 7)
    frame = pd.DataFrame({"a": range(30), "b": [f"z{i % 4}" for i in range(30)]})
    data = parquet_bytes_chunked(len(frame), lambda a, b: frame.iloc[a:b].reset_index(drop=True))
    meta = pq.read_metadata(pa.BufferReader(data))
    assert meta.created_by == CREATED_BY.decode() and meta.num_row_groups == 5
    assert pq.read_table(pa.BufferReader(data)).to_pandas().equals(frame)
