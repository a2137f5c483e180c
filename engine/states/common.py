"""Helpers shared by the states: zone blocks per country, escalated pair layout."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

PAIR_KEY = ["merchant_id", "legal_country_iso"]
ZONE_KEY = ["merchant_id", "legal_country_iso", "tzid"]


@dataclass(frozen=True)
class ZoneLayout:
    """Row layout of D_esc x Z_ord(c): one row per (escalated pair, zone), pairs in key order."""

    pair_merchant: np.ndarray   # (P,) uint64
    pair_country: np.ndarray    # (P,) object
    pair_sites: np.ndarray      # (P,) int64
    pair_k: np.ndarray          # (P,) int64  K(c)
    pair_start: np.ndarray      # (P,) int64  first row of the pair
    row_pair: np.ndarray        # (R,) int64  pair index of each row
    row_zone_pos: np.ndarray    # (R,) int64  position of the zone in Z_ord(c)
    row_prior: np.ndarray       # (R,) int64  row index into the S2 table
    row_tzid: np.ndarray        # (R,) object
    tzids: np.ndarray           # (Z,) object: the S2 tzid column (row_prior indexes it)
    zone_countries: np.ndarray  # (Z,) object: the S2 country_iso column

    @property
    def rows(self) -> int:
        return len(self.row_pair)


def zone_layout(s1: pd.DataFrame, s2: pd.DataFrame) -> ZoneLayout:
    """Lay out escalated pairs over their country's zones, in (merchant, country, tzid) order.

    ``s2`` must be sorted by (country_iso, tzid); an escalated country absent from ``s2`` is the
    caller's error to raise (see :func:`engine.states.s3_plan.missing_countries`).
    """
    esc = s1.loc[s1["is_escalated"].to_numpy(dtype=bool)]
    countries = s2["country_iso"].to_numpy(dtype=object)
    uniq, first, counts = np.unique(countries, return_index=True, return_counts=True)
    pair_country = esc["legal_country_iso"].to_numpy(dtype=object)
    idx = np.searchsorted(uniq, pair_country)
    k = counts[idx].astype(np.int64)
    start_prior = first[idx].astype(np.int64)
    total = int(k.sum())
    pair_start = np.cumsum(k) - k
    row_pair = np.repeat(np.arange(len(k), dtype=np.int64), k)
    row_zone_pos = np.arange(total, dtype=np.int64) - np.repeat(pair_start, k)
    row_prior = np.repeat(start_prior, k) + row_zone_pos
    return ZoneLayout(
        pair_merchant=esc["merchant_id"].to_numpy(dtype=np.uint64),
        pair_country=pair_country,
        pair_sites=esc["site_count"].to_numpy(dtype=np.int64),
        pair_k=k, pair_start=pair_start, row_pair=row_pair, row_zone_pos=row_zone_pos,
        row_prior=row_prior, row_tzid=s2["tzid"].to_numpy(dtype=object)[row_prior],
        tzids=s2["tzid"].to_numpy(dtype=object), zone_countries=countries,
    )


def layout_keys(layout: "ZoneLayout") -> dict:
    """The (merchant_id, legal_country_iso, tzid) key columns of a layout's rows."""
    return {"merchant_id": layout.pair_merchant[layout.row_pair],
            "legal_country_iso": take_strings(layout.pair_country, layout.row_pair),
            "tzid": take_strings(layout.tzids, layout.row_prior)}


_STR = pd.StringDtype("pyarrow", na_value=np.nan)


def take_strings(values: np.ndarray, index: np.ndarray) -> pd.Series:
    """values[index] as an Arrow-backed string column, without per-row Python objects."""
    taken = pa.array(values, type=pa.string()).take(pa.array(index, type=pa.int64()))
    return pd.Series(taken.to_pandas(types_mapper={pa.string(): _STR}.get))


def group_sum(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sum of consecutive row groups beginning at ``starts`` (all groups non-empty)."""
    if len(starts) == 0:
        return np.zeros(0, dtype=values.dtype)
    return np.add.reduceat(values, starts)


def rank_within_pairs(values: np.ndarray, layout: "ZoneLayout") -> np.ndarray:
    """Each row's 0-based rank within its pair by descending ``values``, ties by zone position: the within-pair
    rank of ``np.lexsort((row_zone_pos, -values, row_pair))``. A pair's rows are contiguous and zone-ordered, so
    the pairs of each zone count K form a dense (pairs, K) block, sorted row by row (stable: ties keep zone
    order) instead of three sorts of every row."""
    rank = np.empty(len(values), dtype=np.int64)
    for k in np.unique(layout.pair_k):
        rows = layout.pair_start[layout.pair_k == k][:, None] + np.arange(k, dtype=np.int64)
        order = np.argsort(-values[rows], axis=1, kind="stable")
        block = np.empty_like(order)
        np.put_along_axis(block, order, np.broadcast_to(np.arange(k, dtype=np.int64), order.shape), axis=1)
        rank[rows] = block
    return rank
