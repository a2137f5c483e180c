"""Pooled fidelity: each country's realised outlets summed over many seeds, against its people.

A seed's realised shares in a country of few merchants are a few merchants' Dirichlet draws: F08
(``realised_jsd_max``) reads only countries of 30 merchants or more, where that scatter averages out within one
seed. A policy that steers a smaller country's outlets onto clocks where few people live hides there: one seed
cannot tell its bias from the scatter. Over many seeds the scatter averages out and the bias does not. So a
certification that runs held-out seeds (``tuning.certify --holdout N``) sums each seed's realised outlets per
(country, clock) (:func:`seed_outlets`), and :func:`pooled_fidelity` measures every multi-clock country whose
pooled merchants are at least :data:`POOLED_MIN_MERCHANTS` (ten times F08's 30: an honest country's pooled scatter
is then a tenth of a seed's at 30) against :data:`POOLED_JSD_MAX`, F04's line for the mean, now for each country:
with the scatter pooled away, each country must be as faithful as the countries must be on average on one seed.

Zones are compared as clocks, people are the evidence's (``engine.metrics.fidelity``), and the per-country JSD is
the pack's own arithmetic (:func:`engine.metrics.exact.segment_jsd`). The seeds' outlets are integers: their sums
do not depend on the order the seeds are added.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

import numpy as np
import pandas as pd

from engine.metrics.exact import segment_jsd
from engine.metrics.fidelity import (REALISED_MIN_OUTLETS, _country_rows_keys, _sum_by_clock,
                                     merchants_by_country)
from engine.metrics.fidelity_index import evidence_index
from engine.metrics.keys import Factorized

POOLED_MIN_MERCHANTS = 300   # pooled merchant-country pairs a country needs to be read
POOLED_JSD_MAX = 0.03        # F04's line, for each country once the seeds' scatter is pooled away
SHOWN = 5                    # countries listed in a pooled record, the largest JSDs first


Outlets = tuple[np.ndarray, np.ndarray, np.ndarray]   # (country-clock keys, their country, realised outlets)


class SeedOutlets(NamedTuple):
    """One seed's realised outlets per (country, clock), compact enough to keep for thousands of scored chains: as
    positions in the evidence index's zone-clock keys (``kz``), or as the keys themselves where a zone is outside
    Z(c) (``keys``, ``country``); and the seed's merchants per country (``merchant_countries``, ``merchants``)."""

    kz: np.ndarray | None
    keys: np.ndarray | None
    country: np.ndarray | None
    values: np.ndarray
    merchant_countries: np.ndarray
    merchants: np.ndarray


def seed_outlets(s4: pd.DataFrame, evidence) -> SeedOutlets:
    """One seed's realised outlets per (country, clock) key and its merchants per country, from S4's rows."""
    index = evidence_index(evidence)
    factorized = Factorized()
    coded = index.clock_sums(s4, "legal_country_iso", "zone_site_count", factorized)
    # the distinct countries from the factorization merchants_by_country shares, not a sort of every row's string
    countries = np.unique(np.asarray(factorized(s4, "legal_country_iso")[1], dtype=object).astype(str)) if len(s4) \
        else np.array([], dtype=str)
    merchants = merchants_by_country(s4, countries, factorized).astype(np.int64)
    if coded is not None:
        sums, present = coded
        kz = np.flatnonzero(present).astype(np.int32)
        return SeedOutlets(kz, None, None, np.rint(sums[kz]).astype(np.int64), countries, merchants)
    # a zone outside Z(c): the string path (its clock is its tzid)
    keys, country, values = _sum_by_clock(s4, "legal_country_iso", "zone_site_count", index, evidence.zone_clocks)
    return SeedOutlets(None, keys, country, np.rint(values).astype(np.int64), countries, merchants)


def pool_outlets(per_seed: Iterable[SeedOutlets], evidence) -> tuple[Outlets, dict[str, int], int]:
    """The seeds' :func:`seed_outlets` summed: (outlets per key, merchants per country, seeds)."""
    index = evidence_index(evidence)
    keys, country, values, m_countries, m_counts, n = [], [], [], [], [], 0
    for seed in per_seed:
        n += 1
        if seed.kz is not None:
            keys.append(index.kz[seed.kz])
            country.append(index.u_countries[index.kz_cid[seed.kz]])
        else:
            keys.append(seed.keys)
            country.append(seed.country)
        values.append(seed.values)
        m_countries.append(seed.merchant_countries)
        m_counts.append(seed.merchants)
    merchants: dict[str, int] = {}
    if m_countries:
        names, inv = np.unique(np.concatenate(m_countries), return_inverse=True)
        totals = np.bincount(inv.ravel(), weights=np.concatenate(m_counts), minlength=names.size)
        merchants = {str(c): int(round(v)) for c, v in zip(names, totals)}
    if not keys:
        empty = np.array([], dtype=str)
        return (empty, empty, np.zeros(0, dtype=np.int64)), merchants, 0
    unique, first, inv = np.unique(np.concatenate(keys), return_index=True, return_inverse=True)
    sums = np.bincount(inv.ravel(), weights=np.concatenate(values), minlength=unique.size)
    return (unique, np.concatenate(country)[first], np.rint(sums).astype(np.int64)), merchants, n


def pooled_fidelity(outlets: Outlets, merchants: dict[str, int], seeds: int, evidence) -> dict:
    """Each read country's JSD between its pooled realised outlets and its people, the largest first: ``jsd_max``,
    its ``country``, the ``countries`` read, ``seeds``, the ``line`` and whether every read country holds it
    (``faithful``); ``largest``: the :data:`SHOWN` largest (country, JSD, pooled merchants, pooled outlets)."""
    index = evidence_index(evidence)
    keys, country, values = outlets
    per_country = pd.Series(values.astype(np.float64)).groupby(country).sum() if keys.size else pd.Series(dtype=float)
    read = np.array(sorted(str(c) for c in index.multi if merchants.get(str(c), 0) >= POOLED_MIN_MERCHANTS
                           and per_country.get(str(c), 0.0) >= REALISED_MIN_OUTLETS), dtype=str)
    cid, p, q, _authored = _country_rows_keys((keys, country, values.astype(np.float64)), index, read)
    rows = []
    if cid.size:
        starts = np.flatnonzero(np.concatenate(([True], cid[1:] != cid[:-1])))
        sizes = np.diff(np.append(starts, cid.size))
        for c, v in zip(cid[starts], segment_jsd(p, q, starts, sizes)):
            rows.append((str(c), float(v), merchants.get(str(c), 0), int(per_country.get(str(c), 0))))
    rows.sort(key=lambda r: (-r[1], r[0]))
    top = rows[0] if rows else (None, 0.0, 0, 0)
    return {"jsd_max": top[1], "country": top[0], "countries": len(rows), "seeds": seeds, "line": POOLED_JSD_MAX,
            "min_merchants": POOLED_MIN_MERCHANTS, "faithful": top[1] <= POOLED_JSD_MAX,
            "largest": [{"country": c, "jsd": v, "merchants": m, "outlets": o} for c, v, m, o in rows[:SHOWN]]}
