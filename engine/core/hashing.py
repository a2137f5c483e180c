"""Our hashing laws (DESIGN §8): uer framing, policy digests, identity hashes, table digests."""

from __future__ import annotations

import hashlib
import json
import struct
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:   # the hashes read pandas' columns through pyarrow; a process that hashes no table loads no pandas
    import pandas as pd


def uer(text: str) -> bytes:
    """LE32 byte length followed by the UTF-8 bytes."""
    raw = text.encode("utf-8")
    return struct.pack("<I", len(raw)) + raw


def le64(value: int) -> bytes:
    return struct.pack("<Q", int(value) & 0xFFFFFFFFFFFFFFFF)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def composite_hash(parts: Mapping[str, bytes]) -> str:
    """SHA-256 over, for each part in id order, SHA-256(uer(id) || raw 32-byte digest)."""
    outer = hashlib.sha256()
    for part_id in sorted(parts):
        outer.update(sha256(uer(part_id) + parts[part_id]))
    return outer.hexdigest()


def parameter_hash(policy_digests: Mapping[str, str]) -> str:
    """``policy_digests`` maps policy id -> hex SHA-256 of its raw file bytes."""
    return composite_hash({k: bytes.fromhex(v) for k, v in policy_digests.items()})


def manifest_fingerprint(param_hash: str, world_digest: str, engine_version: str) -> str:
    return sha256_hex(
        uer("3A.manifest") + bytes.fromhex(param_hash) + bytes.fromhex(world_digest) + uer(engine_version)
    )


def run_id(fingerprint: str, seed: int) -> str:
    return sha256_hex(uer("3A.run") + bytes.fromhex(fingerprint) + le64(seed))[:32]


def rng_master(seed: int, world_digest: str) -> bytes:
    """Policies stay out of the master on purpose: common random numbers across candidates."""
    return sha256(uer("3A.rng") + le64(seed) + bytes.fromhex(world_digest))


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _numeric_bytes(values: np.ndarray, kind: str) -> bytes:
    if kind in "iub":
        return np.ascontiguousarray(values.astype("<i8" if kind != "u" else "<u8")).tobytes()
    return np.ascontiguousarray(values.astype("<f8")).tobytes()


def _string_parts(arr) -> tuple[bytes, bytes]:
    """Strings (nulls allowed): (LE64 byte lengths, -1 for null; the UTF-8 data back to back)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    lengths = pc.fill_null(pc.binary_length(arr), -1).to_numpy(zero_copy_only=False).astype("<i8")
    offsets = np.frombuffer(arr.buffers()[1], dtype="<i8")[arr.offset: arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    payload = data.to_pybytes()[int(offsets[0]): int(offsets[-1])] if data is not None and len(arr) else b""
    return lengths.tobytes(), payload


def _as_large_strings(series: pd.Series) -> pa.Array:
    return pa.Array.from_pandas(series).cast(pa.large_string())


def column_kind(series: pd.Series) -> str:
    return series.dtype.kind if series.dtype.kind in "iubf" else "s"


def _column_bytes(series: pd.Series) -> bytes:
    kind = column_kind(series)
    if kind == "s":
        return b"".join(_string_parts(_as_large_strings(series)))
    return _numeric_bytes(series.to_numpy(), kind)


def table_digest(frame: pd.DataFrame, key: Iterable[str] | None, exclude: Iterable[str] = ()) -> str:
    """Digest over a canonical encoding of the rows sorted by ``key``.

    Column-major: for each column in name order, uer(name) || uer(dtype class) || values.
    Independent of the parquet writer and of the incoming row order. ``key=None`` means the
    caller guarantees the frame is already in canonical order.
    """
    skip = set(exclude)
    ordered = frame if key is None else frame.sort_values(list(key), kind="mergesort").reset_index(drop=True)
    digest = hashlib.sha256()
    digest.update(le64(len(ordered)))
    for name in sorted(c for c in ordered.columns if c not in skip):
        col = ordered[name]
        digest.update(uer(name) + uer(column_kind(col)))
        digest.update(_column_bytes(col))
    return digest.hexdigest()


def _constant_parts(value: str | None, n: int) -> tuple[bytes, bytes]:
    """_string_parts of a column holding ``value`` (None: null) on every one of its n rows."""
    raw = b"" if value is None else value.encode("utf-8")
    return np.full(n, -1 if value is None else len(raw), dtype="<i8").tobytes(), raw * n


def chunked_table_digest(rows: int, columns: Iterable[str], column: Callable[[str, int, int], pd.Series],
                         chunk_rows: int, exclude: Iterable[str] = (), constants: Mapping[str, str | None] = {}
                         ) -> str:
    """:func:`table_digest` (``key=None``) of a table read a column slice at a time: ``column(name, a, b)``
    gives rows [a, b) of one column; a string column in ``constants`` holds that one value on every row and
    is encoded without being built. Equal to table_digest of the whole frame, in bounded memory."""
    skip = set(exclude)
    bounds = [(a, min(a + chunk_rows, rows)) for a in range(0, rows, chunk_rows)] or [(0, 0)]
    digest = hashlib.sha256()
    digest.update(le64(rows))
    for name in sorted(c for c in columns if c not in skip):
        kind = column_kind(column(name, 0, min(rows, 1)))
        digest.update(uer(name) + uer(kind))
        if kind != "s":
            for a, b in bounds:
                digest.update(_numeric_bytes(column(name, a, b).to_numpy(), kind))
            continue
        for part in (0, 1):   # all lengths, then all data: the whole column's layout
            for a, b in bounds:
                if name in constants:
                    digest.update(_constant_parts(constants[name], b - a)[part])
                else:
                    digest.update(_string_parts(_as_large_strings(column(name, a, b)))[part])
    return digest.hexdigest()
