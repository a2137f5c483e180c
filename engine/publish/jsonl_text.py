"""Canonical JSON lines written a column at a time (Arrow compute), not a row at a time in Python.

A JSON-lines member of many rows (the RNG events: one line per escalated pair) is a template of fixed text and
column values. Each column becomes its JSON text as an Arrow string array, and the lines are the element-wise
join of the pieces. The bytes are exactly those of :func:`engine.core.hashing.canonical_json` per row:

- an integer (int64 or uint64) is its decimal digits (Arrow's cast, as Python's ``str(int)``);
- a float is Python's ``repr``: the shortest text that reads back to the same double. Arrow's cast produces the
  same shortest digits, but writes some values differently (``1e+10``, ``3`` for ``3.0``, ``0.00001`` for
  ``1e-05``). Its text is kept only where the two agree by construction: a finite value with
  ``1e-4 <= |x| < 1e9`` written with a decimal point and no exponent. Every other value is ``repr``'d in Python;
- an identifier is written between quotes as it is. One that JSON would escape (a quote, a backslash, non-ASCII)
  is refused, as :func:`quoted` refuses it.

The join releases the GIL, so a bundle's RNG logs are written while S6 checks its tables on another thread.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ARROW_FLOAT_RANGE = (1e-4, 1e9)   # |x| in [lo, hi): Arrow's positional text is Python's repr
TEXT = pa.large_string()         # 64-bit offsets: a member of more than 2 GiB of text is one array


def quoted(text: str) -> str:
    """``text`` as a JSON string, for an identifier that needs no escaping (else ValueError)."""
    if '"' in text or "\\" in text or not text.isascii():
        raise ValueError(f"identifier needs JSON escaping: {text!r}")
    return f'"{text}"'


def literal(text: str) -> pa.Scalar:
    """Fixed text between the columns of every line."""
    return pa.scalar(text, TEXT)


def int_text(values) -> pa.Array:
    """Integers (int64/uint64, exact) as their decimal text."""
    values = np.asarray(values)
    if values.dtype.kind not in "iu":
        raise TypeError(f"integer column expected, got {values.dtype}")
    return pc.cast(pa.array(values), TEXT)


def float_text(values) -> pa.Array:
    """Floats as Python's ``repr`` writes them (the shortest round-trip text)."""
    x = np.ascontiguousarray(np.asarray(values, dtype=np.float64))
    text = pc.cast(pa.array(x), TEXT)
    lo, hi = ARROW_FLOAT_RANGE
    with np.errstate(invalid="ignore"):
        in_range = np.isfinite(x) & (np.abs(x) >= lo) & (np.abs(x) < hi)
    positional = pc.and_(pc.match_substring(text, "."), pc.invert(pc.match_substring(text, "e")))
    keep = in_range & positional.to_numpy(zero_copy_only=False)
    if keep.all():
        return text
    others = np.flatnonzero(~keep)
    return pc.replace_with_mask(text, pa.array(~keep), pa.array([repr(float(v)) for v in x[others]], TEXT))


def id_text(values) -> pa.Array:
    """Identifiers (strings that need no JSON escaping) between quotes."""
    arr = pa.array(values)
    if isinstance(arr, pa.ChunkedArray):   # a pandas column Arrow backs
        arr = arr.combine_chunks()
    arr = pc.cast(arr, TEXT)
    bad = pc.or_(pc.invert(pc.string_is_ascii(arr)), pc.match_substring_regex(arr, r'["\\]'))
    if arr.null_count or pc.any(bad).as_py():
        first = arr.filter(pc.or_kleene(bad, pc.is_null(arr)))[0].as_py()
        raise ValueError(f"identifier needs JSON escaping: {first!r}")
    return pc.binary_join_element_wise(literal('"'), arr, literal('"'), literal(""))


def lines(pieces: Sequence[pa.Array | pa.Scalar], rows: int) -> bytes:
    """The element-wise join of ``pieces`` (each line's text, its newline among them) as one bytes object."""
    if rows == 0:
        return b""
    arr = pc.binary_join_element_wise(*pieces, literal(""))
    if not isinstance(arr, pa.Array) or len(arr) != rows:
        raise ValueError(f"the pieces make {len(arr) if isinstance(arr, pa.Array) else 1} lines, not {rows}")
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64, count=rows + 1, offset=arr.offset * 8)
    return arr.buffers()[2][int(offsets[0]):int(offsets[-1])].to_pybytes()
