"""The pre-optimisation fidelity formulation (engine/metrics/fidelity.py at commit 8cf1aeb, pandas
merge/groupby and a per-country scalar loop), kept verbatim as the oracle the optimised
``fidelity_metrics`` must match bit for bit on inputs the pinned fixture does not cover. Since gate 3A-F06 it also
reports ``prior_jsd_max``, the largest of the per-country values its scalar loop computes for the prior mean, and
since gate 3A-F07 ``prior_overserved_max`` by a scalar loop of its definition (:func:`overserved`; matched to the
optimised kernel bit for bit: both sum left to right), and since gate 3A-F08 ``realised_jsd_max``, the largest realised
JSD among the countries of the realised mean with at least 30 distinct merchants (a pandas ``nunique``), and since
gate 3A-F10 ``prior_top1_unsupported`` by a per-country loop of its definition (:func:`top1_unsupported`) over every
country of the prior."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

REALISED_MIN_OUTLETS = 30
REALISED_MIN_MERCHANTS = 30


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


def _loop_sum(values) -> float:
    total = 0.0
    for v in values:
        total += v
    return total


def overserved(p, people, authored, ratio: float = 10.0) -> float:
    """One country's prior mass beyond both ``ratio`` times each clock's people share and its authored share:
    plain loops."""
    total_p = _loop_sum(p)
    total_q = _loop_sum(people)
    return _loop_sum(max(a / total_p - max(ratio * (b / (total_q if total_q > 0 else 1.0)), c), 0.0)
                     for a, b, c in zip(p, people, authored))


def top1_unsupported(p, people, authored, line: float = 0.99) -> bool:
    """One country's prior keeps its largest share under ``line`` only by mass its people and its authored shares do
    not support: each share capped at the larger of the two, the largest capped share over their sum is >= line."""
    total_p, total_q = _loop_sum(p), _loop_sum(people)
    share = [a / total_p for a in p]
    capped = [min(s, max(b / (total_q if total_q > 0 else 1.0), c)) for s, b, c in zip(share, people, authored)]
    kept = _loop_sum(capped)
    return max(share) < line and kept > 0 and max(capped) / kept >= line


def _unsupported_count(prior: pd.DataFrame, population: pd.DataFrame, authored: dict | None) -> int:
    obs, pop = _nested(prior, "share_effective"), _nested(population, "population")
    count = 0
    for country, o in obs.items():
        q, mine = pop.get(country, {}), (authored or {}).get(country, {})
        clocks = sorted(set(o) | set(q))
        p = [o.get(k, 0.0) for k in clocks]
        if _loop_sum(p) > 0:
            count += top1_unsupported(p, [q.get(k, 0.0) for k in clocks], [mine.get(k, 0.0) for k in clocks])
    return count


def _mean_jsd(observed: pd.DataFrame, value: str, population: pd.DataFrame, countries,
              over: dict | None = None, authored: dict | None = None) -> tuple[float, int, dict]:
    per_country = {}
    obs, pop = _nested(observed, value), _nested(population, "population")
    for country in countries:
        o, q = obs.get(country, {}), pop.get(country, {})
        clocks = sorted(set(o) | set(q))
        p = np.array([o.get(k, 0.0) for k in clocks])
        if p.sum() <= 0:
            continue
        per_country[country] = jsd(p, np.array([q.get(k, 0.0) for k in clocks]))
        if over is not None:
            mine = (authored or {}).get(country, {})
            over[country] = overserved(p.tolist(), [q.get(k, 0.0) for k in clocks], [mine.get(k, 0.0) for k in clocks])
    values = list(per_country.values())
    return (float(np.mean(values)) if values else 0.0), len(values), per_country


def reference_fidelity_metrics(tables: Mapping[str, pd.DataFrame], evidence) -> dict:
    """The ``fidelity`` section of the metric pack."""
    zc, pop = evidence.zone_clocks, evidence.clock_population
    aliases = zc[zc.duplicated(["country_iso", "clock"], keep=False)]
    populated = pop.groupby("country_iso").size()
    multi = populated[populated >= 2].index
    # one country's gates also read a country of one populated clock inside Z(c) whose Z(c) has other clocks
    zc_clocks = zc.drop_duplicates(["country_iso", "clock"]).groupby("country_iso").size()
    in_universe = set(zip(zc["country_iso"], zc["clock"]))
    lone = [c for c in populated[populated == 1].index if zc_clocks.get(c, 0) >= 2
            and (c, pop.loc[pop["country_iso"] == c, "clock"].iloc[0]) in in_universe]
    read = sorted(set(multi) | set(lone))
    prior = _by_clock(tables["s2"], zc, "share_effective", "country_iso")
    over: dict = {}
    authored = None if getattr(evidence, "authored_prior", None) is None else \
        _nested(evidence.authored_prior.rename(columns={"share": "value"}), "value")
    prior_mean, prior_n, _ = _mean_jsd(prior, "share_effective", pop, [c for c in multi if c in set(prior["country_iso"])])
    _, _, per_country = _mean_jsd(prior, "share_effective", pop, [c for c in read if c in set(prior["country_iso"])],
                                  over, authored)
    real = _by_clock(tables["s4"], zc, "zone_site_count", "legal_country_iso")
    outlets = real.groupby("country_iso")["zone_site_count"].sum()
    eligible = [c for c in multi if outlets.get(c, 0) >= REALISED_MIN_OUTLETS]
    real_mean, real_n, _ = _mean_jsd(real, "zone_site_count", pop, eligible)
    s4 = tables["s4"]
    merchants = (s4.groupby("legal_country_iso")["merchant_id"].nunique() if "merchant_id" in s4.columns
                 else pd.Series(dtype=np.int64))
    many = [c for c in read if outlets.get(c, 0) >= REALISED_MIN_OUTLETS and merchants.get(c, 0) >= REALISED_MIN_MERCHANTS]
    _, big_n, big = _mean_jsd(real, "zone_site_count", pop, many)
    has_people = set(zip(pop["country_iso"], pop["clock"]))
    unpop_mask = np.array([(c, k) not in has_people for c, k in zip(real["country_iso"], real["clock"])], dtype=bool)
    total = float(real["zone_site_count"].sum())
    unpop = float(real.loc[unpop_mask, "zone_site_count"].sum()) / total if total > 0 else 0.0
    inside = np.array([(c, k) in in_universe for c, k in zip(pop["country_iso"], pop["clock"])], dtype=bool)
    people = pop["population"].to_numpy(dtype=np.float64)
    totals = pd.DataFrame({"c": pop["country_iso"].to_numpy(), "all": people, "out": np.where(inside, 0.0, people)})
    sums = totals.groupby("c")[["all", "out"]].sum()
    per_c = sums["out"] / sums["all"]
    return {
        "applicable": bool(evidence.applicable),
        "alias_count": int(aliases["country_iso"].nunique()),
        "prior_jsd_mean": prior_mean,
        "prior_jsd_countries": prior_n,
        "prior_jsd_max": max(per_country.values()) if per_country else 0.0,
        "prior_overserved_max": max(over.values()) if over else 0.0,
        "prior_top1_unsupported": _unsupported_count(prior, pop, authored),
        "realised_jsd_mean": real_mean,
        "realised_jsd_countries": real_n,
        "realised_jsd_max": max(big.values()) if big else 0.0,
        "realised_jsd_max_countries": big_n,
        "unpopulated_share": unpop,
        "unpopulated_outlets": int(real.loc[unpop_mask, "zone_site_count"].sum()),
        "outside_universe_share": float(per_c.mean()) if len(per_c) else 0.0,
        "populated_multi_clock_countries": int(len(multi)),
    }
