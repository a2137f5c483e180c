"""Fidelity: is the generated data faithful to the population evidence it is built from?

This project's own measures (not the plan's), in every metric pack under ``fidelity``. Zones are
compared as clocks (tzdata links merged); the evidence is GeoNames city population per
(country, clock) (``engine.world.evidence``). JSD is the Jensen-Shannon divergence, base 2 (in [0, 1]).

| key | definition |
|---|---|
| ``alias_count`` | countries whose Z(c) holds two names of one clock |
| ``prior_jsd_mean`` | mean over countries with >= 2 populated clocks of JSD(S2 share_effective, population share) |
| ``realised_jsd_mean`` | the same over S4 zone counts summed over merchants, countries with >= 30 S4 outlets |
| ``unpopulated_share`` | S4 outlets in clocks where the country has no population / all S4 outlets |
| ``outside_universe_share`` | mean over populated countries of the population share living in clocks absent from Z(c) |

A mean over an empty set of countries is 0.0 (no country where a distortion is possible); the
counts of countries that entered each mean are reported beside it.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from engine.metrics.exact import kahan_group_sum, segment_jsd

REALISED_MIN_OUTLETS = 30


def jsd(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence of two distributions on one support, base 2."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return max(0.0, 0.5 * kl(p) + 0.5 * kl(q))


def _by_clock(frame: pd.DataFrame, zone_clocks: pd.DataFrame, value: str, country_col: str) -> pd.DataFrame:
    """Sum ``value`` per (country, clock) of the rows' zones."""
    keyed = frame[[country_col, "tzid", value]].rename(columns={country_col: "country_iso"})
    keyed = keyed.merge(zone_clocks[["country_iso", "tzid", "clock"]], on=["country_iso", "tzid"], how="left")
    keyed["clock"] = keyed["clock"].fillna(keyed["tzid"])
    return keyed.groupby(["country_iso", "clock"], as_index=False)[value].sum()


def _nested(frame: pd.DataFrame, value: str) -> dict:
    out: dict = {}
    for c, k, v in zip(frame["country_iso"], frame["clock"], frame[value]):
        out.setdefault(c, {})[k] = float(v)
    return out


def _mean_jsd(observed: pd.DataFrame, value: str, population: pd.DataFrame, countries) -> tuple[float, int, dict]:
    per_country = {}
    obs, pop = _nested(observed, value), _nested(population, "population")
    for country in countries:
        o, q = obs.get(country, {}), pop.get(country, {})
        clocks = sorted(set(o) | set(q))
        p = np.array([o.get(k, 0.0) for k in clocks])
        if p.sum() <= 0:
            continue
        per_country[country] = jsd(p, np.array([q.get(k, 0.0) for k in clocks]))
    values = list(per_country.values())
    return (float(np.mean(values)) if values else 0.0), len(values), per_country


def share_table(tables: Mapping[str, pd.DataFrame], evidence) -> pd.DataFrame:
    """Per (country, clock): population, prior and realised shares (each sums to 1 per country)."""
    zc, pop = evidence.zone_clocks, evidence.clock_population
    prior = _by_clock(tables["s2"], zc, "share_effective", "country_iso")
    real = _by_clock(tables["s4"], zc, "zone_site_count", "legal_country_iso")
    out = pop.merge(prior, on=["country_iso", "clock"], how="outer").merge(real, on=["country_iso", "clock"], how="outer")
    out = out.fillna({"population": 0, "share_effective": 0.0, "zone_site_count": 0})
    totals = out.groupby("country_iso")[["population", "share_effective", "zone_site_count"]].transform("sum")
    out["population_share"] = out["population"] / totals["population"].where(totals["population"] > 0)
    out["prior_share"] = out["share_effective"] / totals["share_effective"].where(totals["share_effective"] > 0)
    out["realised_share"] = out["zone_site_count"] / totals["zone_site_count"].where(totals["zone_site_count"] > 0)
    out = out.rename(columns={"zone_site_count": "s4_outlets"})
    return out.sort_values(["country_iso", "clock"]).reset_index(drop=True)


# ----------------------------------------------------------------------------- the pack's fast path
# The same arithmetic as _by_clock/_mean_jsd above (tests/metrics/pack_pinned.json pins it), without
# per-row Python objects: rows are reduced to integer codes; only the few distinct (country, tzid),
# (country, clock) keys are ever strings. Keys are "country NUL clock", whose string order is the
# order of the (country, clock) tuples.

def _keys(country, clock) -> np.ndarray:
    return np.char.add(np.char.add(np.asarray(country, dtype=str), "\x00"), np.asarray(clock, dtype=str))


def _lookup_clock(pc: np.ndarray, pt: np.ndarray, zone_clocks: pd.DataFrame) -> np.ndarray:
    """The clock of each (country, tzid); the tzid itself when Z(c) does not list it."""
    zkeys = _keys(zone_clocks["country_iso"].to_numpy(dtype=str), zone_clocks["tzid"].to_numpy(dtype=str))
    if zkeys.size == 0 or pc.size == 0:
        return pt
    order = np.argsort(zkeys, kind="stable")
    want = _keys(pc, pt)
    hit = order[np.minimum(np.searchsorted(zkeys, want, sorter=order), zkeys.size - 1)]
    return np.where(zkeys[hit] == want, zone_clocks["clock"].to_numpy(dtype=str)[hit], pt)


def _sum_by_clock(frame: pd.DataFrame, zone_clocks: pd.DataFrame, value: str, country_col: str):
    """-> (sorted (country, clock) keys, their country, per-key sum of ``value``): ``_by_clock``."""
    cc, cu = pd.factorize(frame[country_col], use_na_sentinel=False)
    tc, tu = pd.factorize(frame["tzid"], use_na_sentinel=False)
    width = max(len(tu), 1)
    code = np.asarray(cc, dtype=np.int64) * width + np.asarray(tc, dtype=np.int64)
    seen = np.zeros(max(len(cu), 1) * width, dtype=bool)
    seen[code] = True
    present = np.flatnonzero(seen)
    pc = np.asarray(cu, dtype=object)[present // width].astype(str)
    pt = np.asarray(tu, dtype=object)[present % width].astype(str)
    gkeys, first, ginv = np.unique(_keys(pc, _lookup_clock(pc, pt, zone_clocks)), return_index=True,
                                   return_inverse=True)
    lut = np.zeros(seen.size, dtype=np.int64)
    lut[present] = ginv.ravel()
    rows, vals = lut[code], frame[value].to_numpy()
    if vals.dtype.kind in "iub":
        sums = np.bincount(rows, weights=vals.astype(np.float64), minlength=gkeys.size)
    else:  # pandas' groupby sum of floats is Kahan-compensated, in row order
        sums = kahan_group_sum(rows, vals, gkeys.size)
    return gkeys, pc[first], sums


def _mean_jsd_keys(obs: tuple, pop: tuple, countries: np.ndarray) -> tuple[float, int]:
    """``_mean_jsd``: per country of ``countries`` (sorted), JSD over the union of its clocks."""
    (okeys, ocountry, ovalues), (pkeys, pcountry, pvalues) = obs, pop
    keys, first, inv = np.unique(np.concatenate([okeys, pkeys]), return_index=True, return_inverse=True)
    inv = inv.ravel()
    p, q = np.zeros(keys.size), np.zeros(keys.size)
    p[inv[:okeys.size]] = ovalues
    q[inv[okeys.size:]] = pvalues
    kcountry = np.concatenate([ocountry, pcountry])[first]
    keep = np.isin(kcountry, countries)
    kcountry, p, q = kcountry[keep], p[keep], q[keep]
    if kcountry.size == 0:
        return 0.0, 0
    starts = np.flatnonzero(np.concatenate(([True], kcountry[1:] != kcountry[:-1])))
    sizes = np.diff(np.append(starts, kcountry.size))
    scored = ~(np.add.reduceat(p, starts) <= 0)  # the scalar loop skips countries whose p sums to <= 0
    values = segment_jsd(p, q, starts[scored], sizes[scored], jsd)
    return (float(np.mean(values)) if values.size else 0.0), int(values.size)


def _evidence_keys(evidence) -> tuple:
    zc, pop = evidence.zone_clocks, evidence.clock_population
    zkeys = _keys(zc["country_iso"].to_numpy(dtype=str), zc["clock"].to_numpy(dtype=str))
    pcountry = pop["country_iso"].to_numpy(dtype=str)
    pkeys = _keys(pcountry, pop["clock"].to_numpy(dtype=str))
    return zkeys, zc["country_iso"].to_numpy(dtype=str), pkeys, pcountry, pop["population"].to_numpy()


def fidelity_metrics(tables: Mapping[str, pd.DataFrame], evidence) -> dict:
    """The ``fidelity`` section of the metric pack; reads ``s2[country_iso, tzid, share_effective]``
    and ``s4[legal_country_iso, tzid, zone_site_count]`` only."""
    zc = evidence.zone_clocks
    zkeys, zcountry, pkeys, pcountry, people = _evidence_keys(evidence)
    zuniq, zcount = np.unique(zkeys, return_counts=True)
    alias_countries = np.unique(zcountry[np.isin(zkeys, zuniq[zcount > 1])])
    pop_countries, populated = np.unique(pcountry, return_counts=True)
    multi = pop_countries[populated >= 2]
    pop = (pkeys, pcountry, people.astype(np.float64))
    prior = _sum_by_clock(tables["s2"], zc, "share_effective", "country_iso")
    prior_mean, prior_n = _mean_jsd_keys(prior, pop, multi[np.isin(multi, prior[1])])
    real = _sum_by_clock(tables["s4"], zc, "zone_site_count", "legal_country_iso")
    rc, rinv = np.unique(real[1], return_inverse=True)
    outlets = np.bincount(rinv.ravel(), weights=real[2], minlength=rc.size)
    eligible = rc[outlets >= REALISED_MIN_OUTLETS]
    real_mean, real_n = _mean_jsd_keys(real, pop, multi[np.isin(multi, eligible)])
    unpop_mask = ~np.isin(real[0], pkeys)
    total = float(real[2].sum())
    unpop_outlets = int(real[2][unpop_mask].sum())
    outside = np.where(np.isin(pkeys, zkeys), 0.0, people.astype(np.float64))
    pinv = np.searchsorted(pop_countries, pcountry)
    per_c = np.bincount(pinv, weights=outside, minlength=pop_countries.size) / \
        np.bincount(pinv, weights=people.astype(np.float64), minlength=pop_countries.size)
    return {
        "applicable": bool(evidence.applicable),
        "alias_count": int(alias_countries.size),
        "prior_jsd_mean": prior_mean,
        "prior_jsd_countries": prior_n,
        "realised_jsd_mean": real_mean,
        "realised_jsd_countries": real_n,
        "unpopulated_share": float(unpop_outlets) / total if total > 0 else 0.0,
        "unpopulated_outlets": unpop_outlets,
        "outside_universe_share": float(pd.Series(per_c).mean()) if per_c.size else 0.0,
        "populated_multi_clock_countries": int(multi.size),
    }
