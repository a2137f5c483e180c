"""Fidelity: is the generated data faithful to the population evidence it is built from?

This project's own measures (not the plan's), in every metric pack under ``fidelity``. Zones are
compared as clocks (tzdata links merged); the evidence is GeoNames city population per
(country, clock) (``engine.world.evidence``). JSD is the Jensen-Shannon divergence, base 2 (in [0, 1]).

| key | definition |
|---|---|
| ``alias_count`` | countries whose Z(c) holds two names of one clock |
| ``prior_jsd_mean`` | mean over countries with >= 2 populated clocks of JSD(S2 share_effective, population share) |
| ``prior_jsd_max`` | the largest of those countries' JSDs, and of the lone ones' (one populated clock among other clocks of Z(c): a zone nobody lives on that a world's alpha pack keeps): one country's priors cannot hide in the mean |
| ``prior_overserved_max`` | the largest of those countries' (lone ones included) over-served prior mass: the part of each clock's prior share beyond both 10 times its people's share and the share the authoring law gives it (the evidence's ``authored_prior``), summed over the country's clocks. JSD barely moves when mass goes onto a clock where almost nobody lives; this counts it |
| ``prior_top1_unsupported`` | countries (every country of S2, with people or not) whose prior keeps its top clock under S2's top-1 line (0.99) only by mass beyond what the evidence supports: with each clock's share capped at the larger of its people's share and its authored share, the top clock holds >= 0.99 of what is left. S2's gate counts a country collapsed at top-1 >= 0.99; several small clocks, each within F07's ten times its people, can together lift a country whose population is collapsed over that line, and this counts it |
| ``realised_jsd_mean`` | the same over S4 zone counts summed over merchants, countries with >= 30 S4 outlets |
| ``realised_jsd_max`` | the largest of those countries' (lone ones included) realised JSDs among the countries with >= 30 merchants: one country's outlets cannot hide in the mean (a safeguard that forces every merchant's second clock onto a clock of a few people moved a quarter of one country's outlets there, and the mean over the others read faithful); with that many merchants a country's Dirichlet scatter averages out |
| ``unpopulated_share`` | S4 outlets in clocks where the country has no population / all S4 outlets |
| ``outside_universe_share`` | mean over populated countries of the population share living in clocks absent from Z(c) |

A mean over an empty set of countries is 0.0 (no country where a distortion is possible); the
counts of countries that entered each mean are reported beside it.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from engine.metrics.exact import (count_top1_unsupported, jsd, max_country_overserved, mean_country_jsd,
                                  pandas_group_sum)
from engine.metrics.fidelity_index import EvidenceIndex, clock_keys, evidence_index
from engine.metrics.keys import Factorized, factorize, rank_codes
from engine.metrics.lines import TOP1_GE

__all__ = ["OVERSERVED_RATIO", "REALISED_MIN_MERCHANTS", "REALISED_MIN_OUTLETS", "fidelity_metrics", "jsd",
           "prior_fidelity", "share_table"]

REALISED_MIN_OUTLETS = 30
# realised_jsd_max: a country enters with this many merchants (pairs), so its realised shares are the policy's and
# not one merchant's Dirichlet draw (the shipped authority's largest over 400 held-out seeds: 0.045, China's ~40)
REALISED_MIN_MERCHANTS = 30
# prior_overserved_max: how many times its people's share a clock may be served (a generous allowance for hubs,
# tourism and the evidence's own gaps) before the rest of its prior counts as over-served, unless the authoring law
# itself gives it more (its smoothing and floors: what the evidence-faithful prior of that clock is)
OVERSERVED_RATIO = 10.0


def _by_clock(frame: pd.DataFrame, zone_clocks: pd.DataFrame, value: str, country_col: str) -> pd.DataFrame:
    """Sum ``value`` per (country, clock) of the rows' zones."""
    keyed = frame[[country_col, "tzid", value]].rename(columns={country_col: "country_iso"})
    keyed = keyed.merge(zone_clocks[["country_iso", "tzid", "clock"]], on=["country_iso", "tzid"], how="left")
    keyed["clock"] = keyed["clock"].fillna(keyed["tzid"])
    return keyed.groupby(["country_iso", "clock"], as_index=False)[value].sum()


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


# ----------------------------------------------------------------------------- fidelity_metrics
# The arithmetic of the pandas formulation (_by_clock, a per-country scalar jsd loop; pinned by
# tests/metrics/pack_pinned.json) without per-row Python objects: rows become integer codes
# (fidelity_index); only when a row's zone is outside Z(c) are the few distinct (country, tzid)
# keys handled as strings (_by_strings).

def _lookup_clock(pc: np.ndarray, pt: np.ndarray, index: EvidenceIndex, zone_clocks: pd.DataFrame) -> np.ndarray:
    """The clock of each (country, tzid); the tzid itself when Z(c) does not list it."""
    zkeys = clock_keys(index.zcountry, zone_clocks["tzid"].to_numpy(dtype=str))
    if zkeys.size == 0 or pc.size == 0:
        return pt
    order = np.argsort(zkeys, kind="stable")
    want = clock_keys(pc, pt)
    hit = order[np.minimum(np.searchsorted(zkeys, want, sorter=order), zkeys.size - 1)]
    return np.where(zkeys[hit] == want, zone_clocks["clock"].to_numpy(dtype=str)[hit], pt)


def _sum_by_clock(frame: pd.DataFrame, country_col: str, value: str, index: EvidenceIndex, zone_clocks):
    """-> (sorted (country, clock) keys, their country, per-key sum of ``value``): ``_by_clock``."""
    cc, cu = factorize(frame[country_col])
    tc, tu = factorize(frame["tzid"])
    width = max(len(tu), 1)
    code = np.asarray(cc, dtype=np.int64) * width + np.asarray(tc, dtype=np.int64)
    seen = np.zeros(max(len(cu), 1) * width, dtype=bool)
    seen[code] = True
    present = np.flatnonzero(seen)
    pc = np.asarray(cu, dtype=object)[present // width].astype(str)
    pt = np.asarray(tu, dtype=object)[present % width].astype(str)
    gkeys, first, ginv = np.unique(clock_keys(pc, _lookup_clock(pc, pt, index, zone_clocks)), return_index=True,
                                   return_inverse=True)
    lut = np.zeros(seen.size, dtype=np.int64)
    lut[present] = ginv.ravel()
    rows, vals = lut[code], frame[value].to_numpy()
    if vals.dtype.kind in "iub":
        sums = np.bincount(rows, weights=vals.astype(np.float64), minlength=gkeys.size)
    else:  # group ids in sorted key order, as the sort=True groupby numbered them
        sums = pandas_group_sum(rows, vals, gkeys.size)
    return gkeys, pc[first], sums


def merchants_by_country(s4: pd.DataFrame, countries: np.ndarray, factorized=None) -> np.ndarray:
    """Distinct merchants with S4 rows in each of ``countries`` (sorted strings); 0 each where S4 has no
    ``merchant_id`` (a table built by hand)."""
    out = np.zeros(countries.size, dtype=np.int64)
    if "merchant_id" not in s4.columns or not len(s4) or not countries.size:
        return out
    factorized = factorized or Factorized()
    cc, cu = factorized(s4, "legal_country_iso")
    per = _pairs_per_code(s4, cc, cu, factorized)
    names = np.asarray(cu, dtype=object).astype(str)
    at = np.minimum(np.searchsorted(countries, names), countries.size - 1)
    hit = countries[at] == names
    np.add.at(out, at[hit], per[hit])
    return out


def _pairs_per_code(s4: pd.DataFrame, cc: np.ndarray, cu: np.ndarray, factorized) -> np.ndarray:
    """Distinct (merchant, country) pairs per code of ``cc``. In S4's writer order (merchant_id, then
    legal_country_iso) a pair's rows are one run: its first rows are counted, in one pass. Rows in another order
    (a table built by hand) are counted by ``np.unique``; the two agree wherever both apply."""
    merchants = s4["merchant_id"].to_numpy()
    if merchants.dtype.kind in "iu" and merchants.size > 1:
        (rank,) = rank_codes([(cc, cu)])
        same = merchants[1:] == merchants[:-1]
        if bool(np.all(merchants[1:] >= merchants[:-1])) and bool(np.all(~same | (rank[1:] >= rank[:-1]))):
            starts = np.flatnonzero(np.concatenate(([True], ~same | (rank[1:] != rank[:-1]))))
            return np.bincount(np.asarray(cc)[starts], minlength=len(cu))
    mc, mu = factorized(s4, "merchant_id")
    width = max(len(mu), 1)
    pairs = np.unique(np.asarray(cc, dtype=np.int64) * width + np.asarray(mc, dtype=np.int64))
    return np.bincount(pairs // width, minlength=len(cu))


def _country_rows_keys(obs: tuple, index: EvidenceIndex, countries: np.ndarray):
    """(country, observed value, people) of each clock of ``countries`` (sorted), each country over the union of
    its observed and populated clocks, grouped by country (``EvidenceIndex.country_rows`` from the strings)."""
    okeys, ocountry, ovalues = obs
    keys, first, inv = np.unique(np.concatenate([okeys, index.pkeys]), return_index=True, return_inverse=True)
    inv = inv.ravel()
    p, q = np.zeros(keys.size), np.zeros(keys.size)
    p[inv[:okeys.size]] = ovalues
    q[inv[okeys.size:]] = index.people
    kcountry = np.concatenate([ocountry, index.pcountry])[first]
    keep = np.isin(kcountry, countries)
    return kcountry[keep], p[keep], q[keep], index.authored_of(keys[keep])


def _prior_part(rows, read, every) -> tuple[float, int, float, float, int]:
    """(prior_jsd_mean, prior_jsd_countries) of the prior's multi-clock country rows, (prior_jsd_max,
    prior_overserved_max) of the rows of every country one country's gates read (``read``: the multi-clock and the
    lone ones, ``EvidenceIndex.read``), and prior_top1_unsupported of every prior country's rows (``every``)."""
    mean, countries, _ = mean_country_jsd(*rows[:3])
    return (mean, countries, mean_country_jsd(*read[:3])[2], max_country_overserved(*read, OVERSERVED_RATIO),
            count_top1_unsupported(*every, TOP1_GE))


def _by_strings(tables: Mapping[str, pd.DataFrame], evidence, index: EvidenceIndex) -> dict:
    """The table-dependent values when some row's zone is outside Z(c) (its clock is its tzid)."""
    zc, multi, read = evidence.zone_clocks, index.multi, index.read
    prior = _sum_by_clock(tables["s2"], "country_iso", "share_effective", index, zc)
    prior_part = _prior_part(_country_rows_keys(prior, index, multi[np.isin(multi, prior[1])]),
                             _country_rows_keys(prior, index, read[np.isin(read, prior[1])]),
                             _country_rows_keys(prior, index, np.unique(prior[1])))
    real = _sum_by_clock(tables["s4"], "legal_country_iso", "zone_site_count", index, zc)
    rc, rinv = np.unique(real[1], return_inverse=True)
    outlets = np.bincount(rinv.ravel(), weights=real[2], minlength=rc.size)
    real_part = mean_country_jsd(*_country_rows_keys(real, index,
                                                     multi[np.isin(multi, rc[outlets >= REALISED_MIN_OUTLETS])])[:3])
    many = (outlets >= REALISED_MIN_OUTLETS) & (merchants_by_country(tables["s4"], rc) >= REALISED_MIN_MERCHANTS)
    real_max = mean_country_jsd(*_country_rows_keys(real, index, read[np.isin(read, rc[many])])[:3])
    return {"prior": prior_part, "realised": real_part, "realised_max": real_max, "total": float(real[2].sum()),
            "unpopulated": int(real[2][~np.isin(real[0], index.pkeys)].sum())}


def _prior_by_codes(s2: pd.DataFrame, index: EvidenceIndex,
                    factorized=None) -> tuple[float, int, float, float, int] | None:
    """(prior_jsd_mean, prior_jsd_countries, prior_jsd_max, prior_overserved_max, prior_top1_unsupported) from S2's
    codes, or None when one of S2's zones is not in Z(c)."""
    prior = index.clock_sums(s2, "country_iso", "share_effective", factorized)
    if prior is None:
        return None
    observed = np.bincount(index.kz_cid[prior[1]], minlength=index.u_countries.size) > 0
    return _prior_part(index.country_rows(*prior, observed), index.country_rows(*prior, observed, "read"),
                       index.country_rows(*prior, observed, "all"))


def prior_fidelity(s2: pd.DataFrame, evidence) -> tuple[float, int, float, float, int] | None:
    """The part of the fidelity section that reads S2 alone (``prior_jsd_mean``, ``prior_jsd_countries``,
    ``prior_jsd_max``, ``prior_overserved_max``, ``prior_top1_unsupported``), for
    :func:`fidelity_metrics`' ``prior``: the chain keeps it while S2 is (``metrics.prior``). None when the codes do
    not serve (a zone outside Z(c)): the section is then measured from the strings, prior included."""
    return _prior_by_codes(s2, evidence_index(evidence))


_UNSET = object()


def _by_codes(tables: Mapping[str, pd.DataFrame], index: EvidenceIndex, factorized=None, prior=_UNSET) -> dict | None:
    factorized = factorized or Factorized()
    prior = _prior_by_codes(tables["s2"], index, factorized) if prior is _UNSET else prior
    real = None if prior is None else index.clock_sums(tables["s4"], "legal_country_iso", "zone_site_count", factorized)
    if real is None:   # S2's or S4's zones are not all in Z(c): the strings serve
        return None
    sums, present = real
    eligible = index.per_country(sums) >= REALISED_MIN_OUTLETS
    many = merchants_by_country(tables["s4"], index.u_countries, factorized) >= REALISED_MIN_MERCHANTS
    return {"prior": prior,
            "realised": index.mean_jsd(sums, present, eligible),
            "realised_max": index.mean_jsd(sums, present, eligible & many, "read"),
            "total": float(sums[present].sum()),
            "unpopulated": int(sums[present & ~index.in_pop[index.kz_to_u]].sum())}


def fidelity_metrics(tables: Mapping[str, pd.DataFrame], evidence, factorized=None, prior=_UNSET) -> dict:
    """The ``fidelity`` section of the metric pack; reads ``s2[country_iso, tzid, share_effective]``
    and ``s4[legal_country_iso, tzid, zone_site_count]`` only (``factorized``: the pack's
    engine.metrics.keys.Factorized, to share its column codes; ``prior``: :func:`prior_fidelity` of the same S2 and
    evidence, measured before)."""
    index = evidence_index(evidence)
    part = _by_codes(tables, index, factorized, prior)
    if part is None:
        part = _by_strings(tables, evidence, index)
    total, unpop = part["total"], part["unpopulated"]
    return {
        "applicable": bool(evidence.applicable),
        "alias_count": index.alias_count,
        "prior_jsd_mean": part["prior"][0],
        "prior_jsd_countries": part["prior"][1],
        "prior_jsd_max": part["prior"][2],
        "prior_overserved_max": part["prior"][3],
        "prior_top1_unsupported": part["prior"][4],
        "realised_jsd_mean": part["realised"][0],
        "realised_jsd_countries": part["realised"][1],
        "realised_jsd_max": part["realised_max"][2],
        "realised_jsd_max_countries": part["realised_max"][1],
        "unpopulated_share": float(unpop) / total if total > 0 else 0.0,
        "unpopulated_outlets": unpop,
        "outside_universe_share": index.outside_share,
        "populated_multi_clock_countries": int(index.multi.size),
    }
