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

from typing import Iterable

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


def seed_outlets(s4: pd.DataFrame, evidence) -> tuple[Outlets, dict[str, int]]:
    """One seed's realised outlets per (country, clock) key (``clock_keys``' arrays), with each key's country, and its
    merchants per country, from S4's rows."""
    index = evidence_index(evidence)
    factorized = Factorized()
    coded = index.clock_sums(s4, "legal_country_iso", "zone_site_count", factorized)
    if coded is not None:
        sums, present = coded
        keys, country, values = index.kz[present], index.u_countries[index.kz_cid[present]], sums[present]
    else:   # a zone outside Z(c): the string path (its clock is its tzid)
        keys, country, values = _sum_by_clock(s4, "legal_country_iso", "zone_site_count", index,
                                              evidence.zone_clocks)
    countries = np.unique(s4["legal_country_iso"].to_numpy().astype(str)) if len(s4) else np.array([], dtype=str)
    merchants = merchants_by_country(s4, countries, factorized)
    return ((keys, country, np.rint(values).astype(np.int64)),
            {str(c): int(m) for c, m in zip(countries, merchants)})


def pool_outlets(per_seed: Iterable[tuple[Outlets, dict[str, int]]]) -> tuple[Outlets, dict[str, int], int]:
    """The seeds' :func:`seed_outlets` summed: (outlets per key, merchants per country, seeds)."""
    keys, country, values, merchants, n = [], [], [], {}, 0
    for (k, c, v), seed_merchants in per_seed:
        n += 1
        keys.append(k)
        country.append(c)
        values.append(v)
        for name, m in seed_merchants.items():
            merchants[name] = merchants.get(name, 0) + m
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
