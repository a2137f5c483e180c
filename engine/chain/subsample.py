"""A keyed, stratified merchant subsample of an outlet catalogue: the search stage of a multi-fidelity sweep.

Law (``subsample(catalogue, f)``, ``0 < f <= 1``):

- **Strata** are country x size band. A merchant's stratum is its *home* country (the country of its largest
  pair by site count; ties to the smaller ISO code) and the band of its total site count
  (``min(floor(log2(sites)), 7)``: 1, 2-3, 4-7, ..., 128+).
- **Selection** is keyed: each merchant gets one uniform ``u = splitmix64(merchant_id ^ K) / 2**64`` with the
  fixed key ``K`` = the first 8 bytes of SHA-256(uer("3A.subsample.v1")). The key is neither the run seed nor
  anything of the policies, so every candidate (and every seed) of a sweep sees the same merchants: common
  random numbers across candidates.
- Within a stratum of ``n`` merchants, those with the ``ceil(f * n)`` smallest ``(u, merchant_id)`` are kept,
  with all their pairs and outlets. Every stratum keeps at least one merchant, fractions are nested (the
  merchants kept at ``f1 <= f2`` are a subset of those kept at ``f2``), and the choice depends only on the
  catalogue's content, never on its row order.
- ``f == 1`` returns the catalogue itself (the run is today's, byte for byte).

The chain seals the subsample as its world (its own ``world_digest`` and run id, so fractions never mix in a
cache or a record) but draws from the full world's RNG master: a kept pair gets the same random numbers as in
the full-scale run, so the subsample's tables are the full run's rows of those merchants (sampling error only).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from engine.core.errors import E_USAGE, EngineError
from engine.core.hashing import sha256, uer

SUBSAMPLE_LAW = "3A.subsample.v1"
KEY = int.from_bytes(sha256(uer(SUBSAMPLE_LAW))[:8], "little")
BANDS = 8   # size bands: floor(log2(total sites)) capped at 7 (128 sites and more)
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def check_fraction(fraction, code: str = E_USAGE) -> float:
    """A fraction in (0, 1] as a float, else a coded usage error."""
    try:
        f = float(fraction)
    except (TypeError, ValueError):
        raise EngineError(code, f"fraction must be a number in (0, 1], not {fraction!r}") from None
    if not (math.isfinite(f) and 0.0 < f <= 1.0):
        raise EngineError(code, f"fraction must be in (0, 1], not {fraction!r}")
    return f


def keyed_uniforms(merchant_ids: np.ndarray) -> np.ndarray:
    """One uniform in [0, 1) per merchant: splitmix64 of (merchant_id XOR the fixed key)."""
    with np.errstate(over="ignore"):
        z = merchant_ids.astype(np.uint64) ^ np.uint64(KEY)
        z = (z + np.uint64(0x9E3779B97F4A7C15)) & _M64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _M64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _M64
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def _pairs(catalogue: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(merchant ids, country codes, country names, site counts) per pair, in any row order of the catalogue."""
    mids = catalogue["merchant_id"].to_numpy(dtype=np.uint64)
    codes, names = pd.factorize(catalogue["legal_country_iso"], sort=True)
    if "site_count" in catalogue.columns:
        sites = catalogue["site_count"].to_numpy(dtype=np.int64)
    else:
        sites = np.ones(len(mids), dtype=np.int64)
    order = np.lexsort((codes, mids))
    mids, codes, sites = mids[order], codes[order], sites[order]
    change = np.r_[True, (mids[1:] != mids[:-1]) | (codes[1:] != codes[:-1])]
    starts = np.flatnonzero(change)
    return mids[starts], codes[starts], np.asarray(names, dtype=object), np.add.reduceat(sites, starts)


def merchant_strata(catalogue: pd.DataFrame) -> pd.DataFrame:
    """merchant_id, home (country), band, u (keyed uniform): one row per merchant, sorted by merchant_id."""
    mids, codes, names, sites = _pairs(catalogue)
    # home country: the largest pair, ties to the smaller country code (codes are sorted ISO order)
    order = np.lexsort((codes, -sites, mids))
    first = np.r_[True, mids[order][1:] != mids[order][:-1]]
    home_rows = order[first]
    starts = np.flatnonzero(np.r_[True, mids[1:] != mids[:-1]])
    totals = np.add.reduceat(sites, starts)
    merchants = mids[starts]
    exponent = np.frexp(np.maximum(totals, 1).astype(np.float64))[1]   # n = m 2^e, m in [0.5, 1): floor(log2 n) = e - 1
    band = np.minimum(exponent.astype(np.int64) - 1, BANDS - 1)         # exact (numpy's log2 is CPU-dispatched)
    return pd.DataFrame({"merchant_id": merchants, "home": names[codes[home_rows]], "band": band,
                         "u": keyed_uniforms(merchants)})


def selected_merchants(catalogue: pd.DataFrame, fraction: float) -> np.ndarray:
    """The merchant ids kept at ``fraction`` (sorted): per stratum the ceil(f * n) smallest (u, merchant_id)."""
    f = check_fraction(fraction)
    strata = merchant_strata(catalogue)
    codes, _ = pd.factorize(strata["home"], sort=True)
    stratum = codes.astype(np.int64) * BANDS + strata["band"].to_numpy()
    mids, u = strata["merchant_id"].to_numpy(), strata["u"].to_numpy()
    order = np.lexsort((mids, u, stratum))
    s_sorted = stratum[order]
    first = np.r_[True, s_sorted[1:] != s_sorted[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    rank = np.arange(len(order)) - group_start
    sizes = np.diff(np.r_[np.flatnonzero(first), len(order)])
    keep_n = np.ceil(f * sizes - 1e-9).astype(np.int64)
    quota = np.repeat(np.maximum(keep_n, 1), sizes)
    return np.sort(mids[order][rank < quota])


def subsample(catalogue: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """The catalogue's rows of the kept merchants, in the catalogue's own row order (``fraction`` 1: itself)."""
    f = check_fraction(fraction)
    if f == 1.0:
        return catalogue
    keep = np.isin(catalogue["merchant_id"].to_numpy(dtype=np.uint64), selected_merchants(catalogue, f))
    return catalogue.loc[keep].reset_index(drop=True)
