"""Approximate in-memory size of a state's outputs, so the chain cache can be bounded by bytes, not entries.

Counted: numpy arrays (``nbytes``), pandas frames and series (their buffers; an object column as 64 bytes a
cell), Arrow arrays and tables (``nbytes``), and the containers and plain objects holding them, each object
once. A large world's state outputs are hundreds of megabytes; a count of entries alone does not bound them.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pyarrow as pa

OBJECT_CELL_BYTES = 64
_MAX_DEPTH = 6


def _frame_bytes(frame: pd.DataFrame | pd.Series) -> int:
    cols = [frame] if isinstance(frame, pd.Series) else [frame[c] for c in frame.columns]
    total = 0
    for col in cols:
        total += len(col) * OBJECT_CELL_BYTES if col.dtype == object else int(col.memory_usage(index=False, deep=False))
    return total


def approx_bytes(value, _seen: set | None = None, _depth: int = 0) -> int:
    """The bytes ``value`` holds (shared objects counted once per call)."""
    seen = _seen if _seen is not None else set()
    if id(value) in seen or _depth > _MAX_DEPTH:
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, (pd.DataFrame, pd.Series)):
        return _frame_bytes(value)
    if isinstance(value, (pa.Array, pa.ChunkedArray, pa.Table, pa.RecordBatch)):
        return int(value.nbytes)
    if isinstance(value, (str, bytes, int, float, bool, type(None))):
        return sys.getsizeof(value)
    if isinstance(value, dict):
        return sum(approx_bytes(k, seen, _depth + 1) + approx_bytes(v, seen, _depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return sum(approx_bytes(v, seen, _depth + 1) for v in value)
    fields = getattr(value, "__dict__", None)
    if fields is None and hasattr(value, "__slots__"):
        fields = {k: getattr(value, k) for k in value.__slots__ if hasattr(value, k)}
    if isinstance(fields, dict):
        return approx_bytes(fields, seen, _depth + 1)
    return sys.getsizeof(value)
