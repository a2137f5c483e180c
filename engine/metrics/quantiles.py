"""The two order statistics of METRICS.md §0: the median and the nearest-rank pXX.

- median: sort; odd n -> the middle value; even n -> the mean of the two middle values.
- nearest rank ("ties round up", polars ``nearest``): sorted ``x[0..n-1]``,
  ``i = floor((n-1)*q + 0.5)``, value ``x[i]``. Not numpy's ``linear`` nor its half-to-even ``nearest``.
- Any statistic over an empty population is 0.0.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np


def _sorted_finite_array(values: Iterable[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64)
    return np.sort(arr.ravel(), kind="stable")


def nearest_rank_index(n: int, q: float) -> int:
    """Index into a sorted array of length ``n`` for quantile ``q`` (METRICS §0)."""
    if n <= 0:
        raise ValueError("nearest_rank_index needs n >= 1")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q!r} outside [0, 1]")
    return min(n - 1, int(math.floor((n - 1) * q + 0.5)))


def quantile_nearest(values: Iterable[float] | np.ndarray, q: float) -> float:
    """Nearest-rank quantile, ties round up; 0.0 for an empty population."""
    x = _sorted_finite_array(values)
    if x.size == 0:
        return 0.0
    return float(x[nearest_rank_index(int(x.size), q)])


def median(values: Iterable[float] | np.ndarray) -> float:
    """Median with the even-n mean-of-two-middles rule; 0.0 for an empty population."""
    x = _sorted_finite_array(values)
    n = int(x.size)
    if n == 0:
        return 0.0
    mid = n // 2
    if n % 2:
        return float(x[mid])
    return float((x[mid - 1] + x[mid]) / 2.0)


def p75(values: Iterable[float] | np.ndarray) -> float:
    return quantile_nearest(values, 0.75)


def p90(values: Iterable[float] | np.ndarray) -> float:
    return quantile_nearest(values, 0.90)


def rate(flags: Iterable[bool] | np.ndarray) -> float:
    """Mean of a boolean over its population; 0.0 when empty."""
    arr = np.asarray(flags if isinstance(flags, np.ndarray) else list(flags), dtype=bool)
    return float(arr.mean()) if arr.size else 0.0
