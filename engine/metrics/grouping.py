"""Fast group-by over key columns with numpy reductions (the metric pack's inner loop).

Groups are numbered by first appearance (``pd.factorize``), so nothing depends on row order; when
the rows are already contiguous per group (the engine writes every table sorted by its key) no
sort is needed, otherwise one stable argsort puts each group's rows together.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from engine.metrics.keys import factorize


def key_codes(columns: Sequence) -> tuple[np.ndarray, int]:
    """One int64 code per row for the tuple of ``columns`` (group ids by first appearance)."""
    combined: np.ndarray | None = None
    for col in columns:
        codes, uniques = factorize(col)
        codes = codes.astype(np.int64)
        combined = codes if combined is None else combined * max(len(uniques), 1) + codes
    if combined is None or combined.size == 0:
        return np.zeros(0, dtype=np.int64), 0
    if len(columns) == 1:
        return combined, int(combined.max()) + 1
    group, uniques = pd.factorize(combined, sort=False)
    return np.asarray(group, dtype=np.int64), len(uniques)


class Groups:
    """Rows grouped by key columns; reductions return one value per group (group order)."""

    def __init__(self, frame: pd.DataFrame | None, keys: Sequence[str] = (), *,
                 codes: np.ndarray | None = None, n: int | None = None) -> None:
        """Groups of ``frame``'s ``keys`` columns, or of given group ``codes`` (ids by first appearance)."""
        if codes is None:
            codes, n = key_codes([frame[k] for k in keys])
        self.codes, self.n = codes, int(n)
        monotone = codes.size < 2 or bool(np.all(codes[1:] >= codes[:-1]))
        self.order = None if monotone else np.argsort(codes, kind="stable")
        ordered = codes if self.order is None else codes[self.order]
        if ordered.size:
            self.starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
        else:
            self.starts = np.zeros(0, dtype=np.int64)
        self.first = self.starts if self.order is None else self.order[self.starts]
        self.sizes = np.diff(np.append(self.starts, codes.size)).astype(np.int64)

    def _ordered(self, values: np.ndarray) -> np.ndarray:
        return values if self.order is None else values[self.order]

    def max(self, values: np.ndarray) -> np.ndarray:
        if self.n == 0:
            return np.zeros(0, dtype=values.dtype)
        return np.maximum.reduceat(self._ordered(values), self.starts)

    def sum(self, values: np.ndarray) -> np.ndarray:
        if self.n == 0:
            return np.zeros(0, dtype=values.dtype)
        return np.add.reduceat(self._ordered(values), self.starts)

    def count(self, mask: np.ndarray) -> np.ndarray:
        return self.sum(np.asarray(mask, dtype=np.int64))

    def broadcast(self, per_group: np.ndarray) -> np.ndarray:
        """A per-group value back onto every row."""
        return per_group[self.codes]

    def first_of(self, values) -> np.ndarray:
        """The value of each group's first row in table order."""
        return np.asarray(values)[self.first]


def distinct_per_group(group_codes: np.ndarray, n_groups: int, values) -> np.ndarray:
    """Number of distinct ``values`` within each group."""
    if group_codes.size == 0:
        return np.zeros(n_groups, dtype=np.int64)
    vcodes, vuniques = pd.factorize(values, sort=False, use_na_sentinel=False)
    pair = group_codes * max(len(vuniques), 1) + np.asarray(vcodes, dtype=np.int64)
    distinct = pd.unique(pair)
    return np.bincount(distinct // max(len(vuniques), 1), minlength=n_groups).astype(np.int64)


def lookup_pairs(left_m, left_c, right_m, right_c) -> np.ndarray:
    """For each left (merchant, country) pair, its row index among the right pairs, or -1."""
    m = np.concatenate([np.asarray(left_m, dtype=np.uint64), np.asarray(right_m, dtype=np.uint64)])
    c = pd.concat([pd.Series(left_c).astype(str), pd.Series(right_c).astype(str)], ignore_index=True)
    codes, _ = key_codes([m, c])
    n_left = len(m) - len(np.asarray(right_m))
    return pd.Index(codes[n_left:]).get_indexer(codes[:n_left])
