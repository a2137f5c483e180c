"""Seeded synthetic outlet catalogue (what segment 1A would hand us), and its validation.

Every random quantity is a keyed uniform (engine.core.rng) on a per-merchant substream, so a
merchant's countries and outlets depend only on (seed, merchant index): the catalogue of a
world with 100x the merchants contains the default catalogue as its first merchants.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.special import ndtri

from engine.core.detmath import c_pow, det_exp
from engine.core.errors import E_WORLD_INPUT, EngineError
from engine.core.hashing import le64, sha256, uer
from engine.core.rng import pair_keys, uniforms
from engine.world.columns import require_columns

_STR = pd.StringDtype("pyarrow", na_value=np.nan)
MERCHANTS_DEFAULT = 2000
MERCHANT_ID_BASE = 100_000
COUNTRY_WEIGHT_POWER = 0.8          # population-weighted country choice, flattened a little
COUNTRY_WEIGHT_FLOOR = 50_000       # every country of the universe can be chosen
EXTRA_COUNTRY_P = 0.18              # P(merchant trades in more than one country)
EXTRA_COUNTRY_CONT = 0.40           # P(one more country | already extra)
MAX_COUNTRIES = 8
SITE_LOG_MEDIAN = math.log(6.0)       # lognormal body of outlets per merchant x country
SITE_LOG_SIGMA = 1.0
CHAIN_P = 0.006                     # share of merchants that are large chains
CHAIN_SCALE = 300.0                 # chains: Pareto(scale, shape) outlets in each country
CHAIN_SHAPE = 1.2
CHAIN_CAP = 2500.0                  # largest chain presence in one country
CANDIDATE_DRAWS = 24                # country candidates drawn per merchant before de-duplication

# counter layout of a merchant's substream
_C_CHAIN, _C_NCOUNTRY = 0, 1
_C_COUNTRY0 = 16
_C_SITES0 = 64


def _master(seed: int) -> bytes:
    return sha256(uer("3A.world.outlets") + le64(seed))


def synthesize_outlets(countries: list[str], weights: np.ndarray, seed: int,
                       merchants: int = MERCHANTS_DEFAULT) -> pd.DataFrame:
    """One row per outlet: merchant_id (uint64), legal_country_iso, site_order (1-based)."""
    ids = np.arange(merchants, dtype=np.uint64) + np.uint64(MERCHANT_ID_BASE)
    keys = pair_keys(_master(seed), "merchant", ids.tolist(), [""] * merchants)

    def draw(counter: int) -> np.ndarray:
        return uniforms(keys, np.full(merchants, counter, dtype=np.uint64))

    chain = draw(_C_CHAIN) < CHAIN_P
    # number of countries: 1, then a geometric tail
    n_countries = np.ones(merchants, dtype=np.int64)
    extra = draw(_C_NCOUNTRY) < EXTRA_COUNTRY_P
    n_countries[extra] += 1
    for step in range(2, MAX_COUNTRIES):
        more = extra & (draw(_C_NCOUNTRY + step) < EXTRA_COUNTRY_CONT)
        n_countries[more] += 1
        extra = more
    cdf = np.cumsum(weights / weights.sum())
    cdf[-1] = 1.0
    candidates = np.stack(
        [np.searchsorted(cdf, draw(_C_COUNTRY0 + j), side="right") for j in range(CANDIDATE_DRAWS)], axis=1
    )
    m_idx, country_idx, slot = _first_distinct(candidates, n_countries)
    # sites per pair: lognormal body, Pareto tail for chains
    pair_keys_ = keys[m_idx]  # one substream per merchant; counters by the pair's slot
    u_body = uniforms(pair_keys_, (_C_SITES0 + 2 * slot).astype(np.uint64))
    u_tail = uniforms(pair_keys_, (_C_SITES0 + 2 * slot + 1).astype(np.uint64))
    # exp and pow with the same bits on every machine (numpy's own are CPU-dispatched: engine.core.detmath)
    body = det_exp(SITE_LOG_MEDIAN + SITE_LOG_SIGMA * ndtri(u_body))
    chains = chain[m_idx]
    tail = np.zeros(len(u_tail))
    tail[chains] = np.minimum(CHAIN_SCALE * c_pow(u_tail[chains], -1.0 / CHAIN_SHAPE), CHAIN_CAP)
    sites = np.maximum(1, np.round(np.where(chains, tail, body))).astype(np.int64)
    names = np.asarray(countries, dtype=object)
    order = np.lexsort((names[country_idx], m_idx))  # (merchant, country) order
    pairs = pd.DataFrame({"merchant_id": ids[m_idx][order], "legal_country_iso": names[country_idx][order],
                          "site_count": sites[order]})
    return expand_pairs(pairs)


def _first_distinct(candidates: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, the first ``wanted`` distinct values in candidate order -> (row, value, slot)."""
    order = np.argsort(candidates, axis=1, kind="stable")
    ranked = np.take_along_axis(candidates, order, axis=1)
    first_sorted = np.ones_like(ranked, dtype=bool)
    first_sorted[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    first = np.empty_like(first_sorted)
    np.put_along_axis(first, order, first_sorted, axis=1)
    take = first & (np.cumsum(first, axis=1) <= wanted[:, None])
    rows, cols = np.nonzero(take)
    slot = np.cumsum(take, axis=1)[rows, cols] - 1
    return rows.astype(np.int64), candidates[rows, cols].astype(np.int64), slot.astype(np.int64)


def expand_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """One row per outlet from (merchant_id, legal_country_iso, site_count), in canonical order."""
    counts = pairs["site_count"].to_numpy(dtype=np.int64)
    pair_countries = pa.array(pairs["legal_country_iso"].to_numpy(dtype=object), type=pa.string())
    country_col = pair_countries.take(pa.array(np.repeat(np.arange(len(counts)), counts)))
    return pd.DataFrame({
        "merchant_id": np.repeat(pairs["merchant_id"].to_numpy(dtype=np.uint64), counts),
        "legal_country_iso": pd.Series(country_col.to_pandas(types_mapper={pa.string(): _STR}.get)),
        "site_order": numbered_runs(counts),
    })


def numbered_runs(counts: np.ndarray) -> np.ndarray:
    """1, 2, ..., counts[i] for each run i of consecutive rows, one after the other (uint32): a pair's site numbers."""
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return (np.arange(int(counts.sum()), dtype=np.int64) - starts + 1).astype(np.uint32)


MAX_OUTLETS = 50_000_000           # outlets a catalogue may hold, in either form (checked before allocating them)
_UINT64_MAX = 2 ** 64 - 1
_EXACT_FLOAT = 2 ** 53


def _digit_ids(column: pd.Series):
    """A text column whose every value, blanks around it aside, is 1-20 ASCII digits, as an Arrow string array (None:
    some value is not, or the column is not text): the ids the per-value parse below would read, without a Python
    ``int()`` per outlet row (10 s for a 10 M-row CSV catalogue)."""
    try:
        arr = pa.array(column)   # an Arrow-backed column as it is, without a copy
    except (pa.ArrowException, TypeError, ValueError):   # values that are not all of one kind
        return None
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return None
    arr = pc.utf8_trim_whitespace(arr)
    return arr if pc.all(pc.match_substring_regex(arr, r"^[0-9]{1,20}$")).as_py() is not False else None


def merchant_ids(column: pd.Series, source: str) -> np.ndarray:
    """merchant_id as uint64, exactly: integers in [0, 2**64-1]; a text column is parsed digit by digit
    (never through float, which would round ids above 2**53 and wrap those beyond 2**64 to 0). A refusal names
    the first offending value and its row."""
    def fail(bad) -> EngineError:
        return EngineError(E_WORLD_INPUT, f"{source}: merchant_id must be an integer in [0, 2**64-1], not "
                                          f"{first_bad(column, np.asarray(bad, dtype=bool))}")

    if pd.api.types.is_bool_dtype(column):
        raise fail(np.ones(len(column), dtype=bool))
    if pd.api.types.is_integer_dtype(column):
        if pd.api.types.is_signed_integer_dtype(column) and (column < 0).any():
            raise fail(column < 0)
        return column.to_numpy().astype(np.uint64)
    if pd.api.types.is_float_dtype(column):
        values = column.to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            bad = ~(np.isfinite(values) & (values >= 0) & (values < _EXACT_FLOAT) & (values == np.floor(values)))
        if bad.any():
            raise fail(bad)
        return values.astype(np.uint64)
    digits = _digit_ids(column)
    if digits is not None:   # every id a plain run of digits: parsed by Arrow, exactly (past 2**64-1: refused)
        try:
            return pc.cast(digits, pa.uint64()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            pass   # an id past 2**64-1: found below, with its row
    text = column.astype(str).str.strip()
    plain = text.str.fullmatch(r"[0-9]{1,20}(\.0*)?").to_numpy(dtype=bool)   # "7.0": an integral id written as text
    if not plain.all():
        raise fail(~plain)
    ints = [int(t.partition(".")[0]) for t in text]
    if ints and max(ints) > _UINT64_MAX:
        raise fail(np.array([i > _UINT64_MAX for i in ints]))
    return np.array(ints, dtype=np.uint64)


def first_bad(column: pd.Series, bad: np.ndarray) -> str:
    """The first offending value of ``column`` (``bad``: a mask over its rows) and where: ``'1,234,567' on data row
    17 (2 such rows)``, the rows counted from 1 after the header."""
    at = np.flatnonzero(bad)
    n = int(at.size)
    return f"{column.iloc[int(at[0])]!r} on data row {int(at[0]) + 1} ({n} such row{'s' if n != 1 else ''})"


def site_counts(column: pd.Series, source: str) -> np.ndarray:
    """site_count as int64: finite integers >= 1 (never booleans), total <= MAX_OUTLETS, the limit the one-row-
    per-outlet form has too (checked before the outlets are expanded, so an absurd count is refused instead of
    allocated). A refusal names the first offending value and its row."""
    if pd.api.types.is_bool_dtype(column) or (column.dtype == object and column.map(type).eq(bool).any()):
        raise EngineError(E_WORLD_INPUT, f"{source}: site_count must be an integer >= 1, not a boolean")
    counts = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(counts) & (counts >= 1) & (counts == np.floor(counts)))
    if bad.any():
        raise EngineError(E_WORLD_INPUT, f"{source}: site_count must be an integer >= 1, not {first_bad(column, bad)}")
    total = counts.sum()
    if total > MAX_OUTLETS:   # the sum of float64 counts is exact below 2**53 only: past it, say about how many
        told = f"{int(total)}" if total < _EXACT_FLOAT else f"about {total:.3g}"
        raise EngineError(E_WORLD_INPUT, f"{source}: {told} outlets exceed the limit of {MAX_OUTLETS}")
    return counts.astype(np.int64)


def _pair_order(mids: np.ndarray, countries: pd.Series) -> np.ndarray:
    """The rows in (merchant_id, legal_country_iso) order, ties in row order: a stable sort on the merchant ids and
    the countries' ranks (a sort on the country strings themselves took seconds on millions of rows)."""
    ranks, _ = pd.factorize(countries, sort=True)
    return np.lexsort((ranks, mids))


_SITE_WORDS, _COUNT_WORDS = {"site", "sites", "outlet", "outlets", "store", "stores"}, \
    {"count", "counts", "n", "nb", "num", "number", "total"}


def _refuse_misnamed_count(frame: pd.DataFrame, source: str) -> None:
    """Without ``site_count`` a catalogue is one row per outlet: a column named as a count of sites (``Site_Count``,
    ``site count``, ``sites``, ``n_sites``, ``outlet_count``) was ignored, and each pair read as one outlet (helper
    52: 2,180 outlets for 3,720,302). A column naming a site (``site_id``, ``site``), or whose values are not all
    whole numbers (``stores`` holding store names), is left alone."""
    for name in map(str, frame.columns):
        words = re.findall(r"[a-z]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", name).lower())
        named = words in (["sites"], ["outlets"], ["stores"]) or bool(set(words) & _SITE_WORDS and
                                                                       set(words) & _COUNT_WORDS)
        if named and pd.to_numeric(frame[name].astype(str).str.replace(",", ""), errors="coerce").notna().all():
            raise EngineError(E_WORLD_INPUT, f"{source}: column {name!r} reads as a count of sites, which is read "
                                             f"from a column named site_count only: name it site_count (without it, "
                                             f"every row is one outlet)")


def validate_outlets(frame: pd.DataFrame, universe_countries: set[str], source: str) -> pd.DataFrame:
    """A user-supplied catalogue: one row per outlet, or one row per pair with ``site_count``."""
    require_columns(frame, {"merchant_id", "legal_country_iso"}, "outlet catalogue", source)
    if frame["merchant_id"].isna().any() or frame["legal_country_iso"].isna().any():
        raise EngineError(E_WORLD_INPUT, f"{source}: null merchant_id or legal_country_iso")
    mids = merchant_ids(frame["merchant_id"], source)
    countries = frame["legal_country_iso"].astype(str)
    unknown = sorted(set(countries.unique()) - universe_countries)   # the distinct codes only: millions of rows
    if unknown:
        near = unknown[0].strip().upper()
        hint = (f" (country codes are written as the universe writes them, two upper-case letters with no spaces: "
                f"{near!r})" if near != unknown[0] and near in universe_countries else "")
        raise EngineError(E_WORLD_INPUT, f"{source}: country {unknown[0]!r} is not in the zone universe{hint}",
                          country=str(unknown[0]), case_hint=bool(hint))
    if "site_count" in frame.columns:
        counts = site_counts(frame["site_count"], source)
        pairs = pd.DataFrame({"merchant_id": mids,
                              "legal_country_iso": countries,
                              "site_count": counts.astype(np.int64)})
        repeated = pairs.duplicated(["merchant_id", "legal_country_iso"])
        if repeated.any():
            first = pairs[repeated].iloc[0]
            raise EngineError(E_WORLD_INPUT, f"{source}: duplicate (merchant_id, legal_country_iso) pair "
                                             f"({first['merchant_id']}, {first['legal_country_iso']})")
        return expand_pairs(pairs.iloc[_pair_order(mids, countries)])
    _refuse_misnamed_count(frame, source)   # one row per outlet: a count column by another name is refused
    if len(frame) > MAX_OUTLETS:
        raise EngineError(E_WORLD_INPUT, f"{source}: {len(frame)} outlets exceed the limit of {MAX_OUTLETS}")
    order = _pair_order(mids, countries)
    out = pd.DataFrame({"merchant_id": mids[order], "legal_country_iso": countries.iloc[order].reset_index(drop=True)})
    merchants, countries = out["merchant_id"].to_numpy(), pd.factorize(out["legal_country_iso"])[0]
    first = np.ones(len(out), dtype=bool)   # where a run of equal (merchant, country) rows begins
    first[1:] = (merchants[1:] != merchants[:-1]) | (countries[1:] != countries[:-1])
    out["site_order"] = numbered_runs(np.diff(np.r_[np.flatnonzero(first), len(out)]))
    return out
