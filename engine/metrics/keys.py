"""Row keys as integer codes (the S6 checks and the metric pack): no per-row Python objects, no merge and no
``DataFrame.duplicated`` on the happy path (tables equal and sorted), exact set arithmetic otherwise.

A key is a tuple of equally long integer arrays (``merchant_id`` as uint64, strings as rank codes
in one vocabulary shared by every table of the comparison, so equal strings have equal codes and
code order is string order).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Sequence

import numpy as np
import pandas as pd

Key = Sequence[np.ndarray]

# factorize() of an Arrow-backed column, by the identity of its (immutable) Arrow data: an entry lives exactly as
# long as that data (a weakref finalizer drops it), so an id is never reused while its entry exists. The chain's
# key columns are one Arrow array per seed and S1 outcome (engine.states.s3_plan), shared by the S3, S4 and
# zone_alloc tables of every candidate: the metric pack and S6 factorize them once, not once per table and run.
_ARROW_CODES: dict[int, tuple[np.ndarray, np.ndarray]] = {}


# rank_codes' vocabularies by the identity of the distinct values they were built from (most recent last): the
# chain's tables share their key columns' factorize results, so one candidate after another asks for the same.
_RANKS: OrderedDict[tuple[int, ...], tuple[tuple[np.ndarray, ...], np.ndarray, list[np.ndarray]]] = OrderedDict()
_RANKS_LOCK = threading.Lock()
RANKS_REMEMBERED = 64


def _arrow_data(column):
    array = getattr(column, "array", None)
    return array.__arrow_array__() if isinstance(array, pd.arrays.ArrowStringArray) else None


def _forget(key: int) -> None:
    _ARROW_CODES.pop(key, None)


def factorize(column) -> tuple[np.ndarray, np.ndarray]:
    """(int32 codes by first appearance, the distinct values as str; a null is the string "nan"). The arrays are
    read-only: an Arrow-backed column's are shared by every caller that factorizes the same Arrow data."""
    data = _arrow_data(column)
    if data is not None and id(data) in _ARROW_CODES:
        return _ARROW_CODES[id(data)]
    codes, uniques = pd.factorize(column, use_na_sentinel=False)
    out = np.asarray(codes, dtype=np.int32), np.asarray(uniques, dtype=object).astype(str)
    for a in out:
        a.flags.writeable = False
    if data is not None:
        _ARROW_CODES[id(data)] = out
        weakref.finalize(data, _forget, id(data))
    return out


class Factorized:
    """``factorize`` of a frame's column, computed once per (frame, column) for the life of this
    object (one metric pack): sections that read the same column share its codes."""

    def __init__(self) -> None:
        self._memo: dict = {}

    def __call__(self, frame: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
        key = (id(frame), column)
        if key not in self._memo:
            self._memo[key] = (frame, factorize(frame[column]))  # the frame is held: its id stays unique
        return self._memo[key][1]


def _vocabulary(uniques: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The columns' shared sorted vocabulary and each column's distinct values' ranks (int32) in it. Remembered while
    the arrays are read-only ones (``factorize``'s): the entry holds them, so their ids stay theirs."""
    remember = all(not u.flags.writeable for u in uniques)
    key = tuple(id(u) for u in uniques)
    with _RANKS_LOCK:
        hit = _RANKS.get(key) if remember else None
        if hit is not None:
            _RANKS.move_to_end(key)
            return hit[1], hit[2]
    vocab = np.unique(np.concatenate(uniques)) if uniques else np.zeros(0, dtype=str)
    maps = [np.searchsorted(vocab, u).astype(np.int32) for u in uniques]
    if remember:
        vocab.flags.writeable = False
        with _RANKS_LOCK:
            _RANKS[key] = (tuple(uniques), vocab, maps)
            while len(_RANKS) > RANKS_REMEMBERED:
                _RANKS.popitem(last=False)
    return vocab, maps


def rank_codes(factorized: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """Rank codes (int32) in one shared sorted vocabulary of the factorized columns: equal strings
    have equal codes across columns, and code order is string order."""
    return vocabulary_codes(factorized)[0]


def vocabulary_codes(factorized: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[list[np.ndarray], np.ndarray]:
    """``rank_codes`` and the sorted vocabulary they rank in (read-only when remembered)."""
    vocab, maps = _vocabulary([u for _, u in factorized])
    return [m[c] for m, (c, _) in zip(maps, factorized)], vocab


def codes_in(vocab: np.ndarray, column) -> np.ndarray:
    """A string column's codes against a sorted ``vocab`` made without it: a value in ``vocab`` gets its rank, a value
    outside it ``len(vocab)`` + its rank among the column's values outside. Equal strings get equal codes, and a value
    outside never shares a code with one inside (code order is string order within each of the two)."""
    codes, uniques = factorize(column)
    pos = np.searchsorted(vocab, uniques)
    inside = pos < len(vocab)
    inside[inside] = vocab[pos[inside]] == uniques[inside]
    ranks = pos.astype(np.int32)
    if not inside.all():
        outside = np.unique(uniques[~inside])
        ranks[~inside] = len(vocab) + np.searchsorted(outside, uniques[~inside]).astype(np.int32)
    return ranks[codes]


def string_codes(columns: Sequence) -> list[np.ndarray]:
    """``rank_codes`` of string columns."""
    return rank_codes([factorize(col) for col in columns])


def small_int_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)``; by counting (no sort) for small non-negative ints."""
    if values.size == 0 or values.min() < 0 or values.max() >= 1 << 20:
        uniq, inv = np.unique(values, return_inverse=True)
        return uniq, inv.ravel()
    present = np.bincount(values) > 0
    return np.flatnonzero(present), (np.cumsum(present) - 1)[values]


def strictly_increasing(key: Key) -> bool:
    """Rows in strictly increasing lexicographic key order (hence no two rows share a key)."""
    n = len(key[0])
    if n < 2:
        return True
    later = np.zeros(n - 1, dtype=bool)
    tied = np.ones(n - 1, dtype=bool)
    for col in key:
        later |= tied & (col[1:] > col[:-1])
        tied &= col[1:] == col[:-1]
    return bool(later.all())


def same_rows(a: Key, b: Key) -> bool:
    return len(a[0]) == len(b[0]) and all(np.array_equal(x, y) for x, y in zip(a, b))


def dense_keys(*keys: Key) -> list[np.ndarray]:
    """One int64 per row for every key set, comparable across the sets (equal tuples, equal ints)."""
    sizes = [len(k[0]) for k in keys]
    out = np.zeros(sum(sizes), dtype=np.int64)
    for i in range(len(keys[0])):
        uniq, inv = np.unique(np.concatenate([k[i] for k in keys]), return_inverse=True)
        out = out * max(uniq.size, 1) + inv.ravel()
    return np.split(out, np.cumsum(sizes)[:-1])


def set_diff(a: Key, b: Key) -> tuple[int, int]:
    """(distinct keys of b not in a, distinct keys of a not in b); fast when a and b are the same
    strictly increasing rows."""
    if same_rows(a, b) and strictly_increasing(a):
        return 0, 0
    ka, kb = (np.unique(k) for k in dense_keys(a, b))
    return int(kb.size - np.isin(kb, ka).sum()), int(ka.size - np.isin(ka, kb).sum())


def duplicates(key: Key) -> int:
    """Rows whose key an earlier row already has (``DataFrame.duplicated(...).sum()``)."""
    if strictly_increasing(key):
        return 0
    return int(len(key[0]) - np.unique(dense_keys(key)[0]).size)


def groups(key: Key) -> tuple[np.ndarray, int, np.ndarray]:
    """(group id per row, number of groups, first row of each group in table order)."""
    n = len(key[0])
    if n == 0:
        return np.zeros(0, dtype=np.int64), 0, np.zeros(0, dtype=np.int64)
    brk = np.zeros(n - 1, dtype=bool)
    for col in key:
        brk |= col[1:] != col[:-1]
    starts = np.flatnonzero(np.concatenate(([True], brk)))
    if strictly_increasing([col[starts] for col in key]):
        return np.cumsum(np.concatenate(([0], brk))), int(starts.size), starts
    uniq, inv = np.unique(dense_keys(key)[0], return_inverse=True)
    gid = inv.ravel().astype(np.int64)
    first = np.full(uniq.size, n, dtype=np.int64)
    np.minimum.at(first, gid, np.arange(n, dtype=np.int64))
    return gid, int(uniq.size), first


def find_rows(queries: Key, table: Key) -> np.ndarray:
    """For each query key, the first table row with that key, or -1."""
    if same_rows(queries, table) and strictly_increasing(table):
        return np.arange(len(table[0]), dtype=np.int64)
    kq, kt = dense_keys(queries, table)
    order = np.argsort(kt, kind="stable")
    at = np.minimum(np.searchsorted(kt, kq, sorter=order), max(kt.size - 1, 0))
    if kt.size == 0:
        return np.full(kq.size, -1, dtype=np.int64)
    hit = order[at]
    return np.where(kt[hit] == kq, hit, -1).astype(np.int64)


def first_appearance_groups(key: Key) -> tuple[np.ndarray, int, np.ndarray]:
    """``groups`` numbered by first appearance in table order (as ``pd.factorize`` would)."""
    gid, n, first = groups(key)
    if n < 2 or bool(np.all(first[1:] > first[:-1])):
        return gid, n, first
    order = np.argsort(first, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n, dtype=np.int64)
    return rank[gid], n, first[order]
