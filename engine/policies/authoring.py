"""Authoring rules for the baseline policies, and the authoring realism floors (a veto).

Alphas: for country c with zones Z(c) and city population pop(c,z) (total P), over its K populated zones
(all of Z(c) when P = 0):
  smoothing mass sigma(c) = SMOOTH_FRACTION * P / K + min(SMOOTH_FLOOR, SMOOTH_CAP * P / K)   (people per zone)
  share s(c,z)            = (pop(c,z) + b(c,z)) / sum_z (pop + b),  b = min(sigma, 9 pop)  (uniform when P = 0)
  concentration A(c)      = clamp(A_PER_SQRT_ZONE * sqrt(K), A_MIN, A_MAX)  (the A(c) law)
  alpha(c,z)              = max(round(A(c) * s(c,z), 6), 1e-6)
The absolute part of the smoothing (a town's worth of people a clock may have that the cities miss) is capped at
SMOOTH_CAP of the country's people per populated clock (our law): in a country of a few thousand people, 1,000 a
clock would outweigh the evidence (a clock of 5 people beside one of 4,990 got 12.6% of the prior); every country
of 20,000 people a clock or more (every multi-clock country of the default world) is authored as before. And a
clock is smoothed to at most SMOOTH_RATIO times its own people, pop + min(sigma, (SMOOTH_RATIO - 1) pop) (our law):
sigma is its country's, so a clock of one person beside 40,000 on another got 1.65% of the prior, 330 times its
people, which fidelity then took as the authored allowance (helper 51 certified B with 3-4% of three countries'
outlets on clocks of one person). SMOOTH_RATIO is fidelity's OVERSERVED_RATIO; no clock of the default world
(its smallest holds 0.48 of its country's sigma) is capped.
A zone of Z(c) with pop(c,z) = 0 in a country with P > 0 gets alpha 1e-6 (our law, not the original spec's, whose
smoothing gave such a zone about 0.002 / K of the country's mass: outlets where the evidence says nobody lives).
Floors (zone presence): a zone with city population anywhere gets floor_value FLOOR_PRESENT and an
unconditional bump_threshold 0, gated at ALPHA_MIN instead where another country lists it empty (our law: the
floor stays off the empty one), and just above the raw share of any clock of it the floor would lift beyond
FLOOR_LIFT_MAX times its people (our law: a floor is no allowance to serve clocks of a few people; 20, not F07's 10,
because the default world's own floors lift Vincennes, 15,451 people, to 18.7 times); a zone without any city gets
FLOOR_ABSENT gated at 0.6 (floor only if dominant).
The mixture policy is the shipped ladder with every extension block disabled.

Realism floors (vetoes for every candidate): each country's effective alpha sum lies in
[ALPHA_SUM_MIN, ALPHA_SUM_MAX]; among the large multi-zone countries (K >= LARGE_K) at least
NONUNIFORM_MIN_SHARE are non-uniform by the guide's test: total-variation distance of the
effective shares from uniform >= NONUNIFORM_TV. With population evidence, a large country whose people are
themselves spread within NONUNIFORM_TV of uniform is not judged by that test (our law: faithful to the evidence;
flat priors are the flaw only where the people are not flat).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import yaml

SMOOTH_FRACTION = 0.002
SMOOTH_FLOOR = 1000.0             # people a populated clock is smoothed with, at most ...
SMOOTH_CAP = 0.05                 # ... this share of its country's people per populated clock
SMOOTH_RATIO = 10.0               # ... and at most this many times the clock's own people, in all (F07's ratio)
A_PER_SQRT_ZONE = 20.0
A_MIN, A_MAX = 15.0, 160.0
ALPHA_MIN = 1e-6                  # the smallest alpha written; a zone its country's evidence leaves empty gets it
FLOOR_PRESENT, FLOOR_ABSENT = 0.10, 0.05
FLOOR_LIFT_MAX = 20.0             # a floor lifts a clock to at most this many times its people's share
ALPHA_SUM_MIN, ALPHA_SUM_MAX = 15.0, 160.0
LARGE_K = 4
NONUNIFORM_TV = 0.05
NONUNIFORM_MIN_SHARE = 0.70
VERSION = "v1.0.0"

BASE_RULES = [
    {"metric": "site_count_lt", "threshold": 3, "decision_reason": "below_min_sites"},
    {"metric": "zone_count_country_le", "threshold": 1, "decision_reason": "forced_monolithic"},
    {"metric": "zone_count_country_ge", "threshold": 4, "decision_reason": "forced_escalation"},
    {"metric": "site_count_ge", "threshold": 35, "decision_reason": "forced_escalation"},
]


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump_yaml(doc: dict) -> bytes:
    """The one serialisation of policy documents: deterministic, key order as built, and exact on
    load (plain str/int/float/bool/list/dict; floats written with their shortest repr)."""
    return yaml.dump(doc, Dumper=_DUMPER, sort_keys=False, default_flow_style=False,
                     allow_unicode=False).encode("utf-8")


def concentration(k: int) -> float:
    return min(max(A_PER_SQRT_ZONE * math.sqrt(k), A_MIN), A_MAX)


def smoothing_mass(people: float, k: int) -> float:
    """sigma(c): the people each of a country's ``k`` populated clocks is smoothed with (``people`` in all)."""
    per_clock = people / k
    return SMOOTH_FRACTION * per_clock + min(SMOOTH_FLOOR, SMOOTH_CAP * per_clock)


def author_alphas(population: pd.DataFrame) -> dict:
    countries: dict = {}
    for iso, grp in population.groupby("country_iso", sort=True):
        pop = grp["population"].to_numpy(dtype=np.float64)
        # our law (DESIGN: faithful to the evidence): in a country with evidence, a zone the evidence leaves empty
        # gets the minimum alpha and the law runs over the populated zones alone, as if the empty one were absent;
        # a country without any evidence stays uniform over all its zones
        lived = pop > 0 if pop.sum() > 0 else np.ones(len(pop), dtype=bool)
        k = int(lived.sum())
        if pop.sum() > 0:
            sigma = smoothing_mass(pop.sum(), k)
            boost = np.minimum(sigma, (SMOOTH_RATIO - 1.0) * pop)   # a clock of few people: up to 10x them
            cut = float((sigma - boost)[lived].sum())               # 0.0 where no clock is capped: the same bits
            share = np.where(lived, (pop + boost) / (pop.sum() + k * sigma - cut), 0.0)
        else:   # no evidence: uniform (1 / k, the value the smoothing alone gave: 1000 / (k * 1000))
            share = np.full(len(pop), 1.0 / k)
        a = concentration(k)
        entries = [{"tzid": tz, "alpha": max(round(float(a * s), 6), ALPHA_MIN)} for tz, s in zip(grp["tzid"], share)]
        block = {"tzid_alphas": entries}
        if pop.sum() == 0:
            block["notes"] = "mass_basis=smoothing_only"
        countries[iso] = block
    return {"version": VERSION, "countries": countries}


def author_floors(population: pd.DataFrame, alphas: dict | None = None) -> dict:
    """One floor per tzid (the policy's key), for every country whose Z(c) lists it. A tzid some country's people
    live on and another's evidence leaves empty (a pack keeping empty zones, a zone shared across countries) is
    floored only where its country's prior gives it more than the empty mark (bump_threshold ALPHA_MIN: an empty
    zone's raw share is ALPHA_MIN / A(c) below it, a populated one's above it unless the clock holds under about
    a ten-millionth of its country's people, as good as empty): unconditional, the floor would put outlets on the
    empty one."""
    people = population["population"].to_numpy(dtype=np.float64)
    grouped = pd.DataFrame({"tzid": population["tzid"].to_numpy(dtype=object), "lived": people > 0,
                            "empty": ~(people > 0)}).groupby("tzid", sort=True)
    lived, empty = grouped["lived"].any(), grouped["empty"].any()
    lifted = _overlifted_shares(population, author_alphas(population) if alphas is None else alphas)
    floors = [{"tzid": tz, "floor_value": FLOOR_PRESENT if lived[tz] else FLOOR_ABSENT,
               "bump_threshold": max(ALPHA_MIN if empty[tz] else 0.0, lifted.get(tz, 0.0)) if lived[tz] else 0.6}
              for tz in lived.index]
    return {"version": VERSION, "floors": floors}


def _overlifted_shares(population: pd.DataFrame, alphas: dict) -> dict[str, float]:
    """tzid -> a bump_threshold just above the raw S2 share of every clock of it that FLOOR_PRESENT would lift beyond
    FLOOR_LIFT_MAX times its people's share (our law: a floor is no allowance to serve a clock of a few people; the
    floor is per clock, so 30 clocks of one person each, floored, held 2.2% of the US's outlets, certified B). The
    raw shares are S2's own (priors with no floor), so the gate is exact; a clock of the same tzid in another country
    whose raw share is below the gate loses its floor too (the gate errs towards the people)."""
    from engine.states.s2_priors import priors

    s2 = priors(population[["country_iso", "tzid"]], alphas, {"version": VERSION, "floors": []})
    rows = s2.merge(population, on=["country_iso", "tzid"])
    total = rows.groupby("country_iso")["population"].transform("sum").to_numpy(dtype=np.float64)
    people = rows["population"].to_numpy(dtype=np.float64)
    raw, alpha_sum = rows["alpha_raw"].to_numpy(dtype=np.float64), rows["alpha_sum_country"].to_numpy(dtype=np.float64)
    floored = FLOOR_PRESENT / (alpha_sum - raw + FLOOR_PRESENT)   # the clock's share were it floored alone
    over = (people > 0) & (raw < FLOOR_PRESENT) & (floored > FLOOR_LIFT_MAX * people / np.where(total > 0, total, 1))
    shares = rows.loc[over].groupby("tzid")["share_effective"].max()   # no floor: share_effective is the raw share
    return {str(tz): float(np.nextafter(v, 1.0)) for tz, v in shares.items()}


def author_mixture() -> dict:
    return {
        "policy_id": "zone_mixture_policy_3A", "version": VERSION, "theta_mix": 0.35,
        "rules": [dict(r) for r in BASE_RULES],
        "s1_smoothing": {"enabled": False, "zone_count_min": 5, "zone_count_max": 16,
                         "zone_escalation_prob_min": 0.08, "zone_escalation_prob_max": 0.5,
                         "site_count_slope": 0.2, "site_count_cap": 0.22},
        "s3_dispersion": {"enabled": False, "concentration_scale": 1.0, "alpha_temperature": 1.0,
                          "merchant_jitter": 0.0, "merchant_jitter_clip": 0.0, "alpha_floor": 1.0e-6},
        "s4_safeguards": {"enabled": False, "site_threshold": 10, "min_second_zone_share": 0.0,
                          "max_forced_zones": 0, "stochastic_rounding": False},
    }


def author_policies(population: pd.DataFrame) -> dict[str, bytes]:
    """policy id -> file bytes; byte-identical on every run for the same world."""
    alphas = author_alphas(population)
    return {"country_zone_alphas": dump_yaml(alphas),
            "zone_floor_policy": dump_yaml(author_floors(population, alphas)),
            "zone_mixture_policy": dump_yaml(author_mixture())}


def evenly_populated(population: pd.DataFrame) -> frozenset[str]:
    """The countries whose people the evidence spreads within NONUNIFORM_TV of uniform over their zones: uniform
    priors are faithful there, not flat. A country the evidence has no one in is not one (its spread is unknown)."""
    out = set()
    for iso, grp in population.groupby("country_iso", sort=True):
        pop = grp["population"].to_numpy(dtype=np.float64)
        total = pop.sum()
        if total > 0 and 0.5 * np.abs(pop / total - 1.0 / len(pop)).sum() < NONUNIFORM_TV:
            out.add(str(iso))
    return frozenset(out)


def realism_floors(s2: pd.DataFrame, evenly: frozenset | set | None = None) -> dict:
    """Authoring realism floors over an S2 table (country_iso, share_effective, alpha_effective).

    ``evenly`` (:func:`evenly_populated` of the world's evidence, when it has some; computed once per world, since
    this runs once per tuning candidate): a large country whose people the evidence spreads within NONUNIFORM_TV of
    uniform is not judged by the non-uniform floor, since its faithful priors are near uniform; without evidence
    (None) every large country is judged.
    Group sums are pandas' own, bit for bit (:func:`engine.metrics.exact.pandas_group_sum`), on numpy
    arrays without pandas objects (this runs once per tuning candidate); the share of non-uniform large
    countries is count / count, as pandas' mean of a boolean Series."""
    from engine.metrics.exact import pandas_group_sum

    names, codes = np.unique(s2["country_iso"].to_numpy(dtype=object), return_inverse=True)
    codes = codes.ravel()
    k = np.bincount(codes, minlength=names.size)
    sums = pandas_group_sum(codes, s2["alpha_effective"].to_numpy(dtype=np.float64), names.size)
    gap = np.abs(s2["share_effective"].to_numpy(dtype=np.float64) - 1.0 / k[codes])
    tv = pandas_group_sum(codes, gap, names.size) / 2.0
    large = k >= LARGE_K
    even = sorted(set(names[large].tolist()) & set(evenly)) if evenly is not None else []
    judged = large & ~np.isin(names, np.array(even, dtype=object))
    n_large, n_judged = int(np.count_nonzero(large)), int(np.count_nonzero(judged))
    nonuniform = float(np.count_nonzero(tv[judged] >= NONUNIFORM_TV)) / n_judged if n_judged else 1.0
    reasons = []
    low, high = names[sums < ALPHA_SUM_MIN], names[sums > ALPHA_SUM_MAX]
    if len(low):
        reasons.append(f"alpha sum below {ALPHA_SUM_MIN} in {len(low)} countries (e.g. {low[0]})")
    if len(high):
        reasons.append(f"alpha sum above {ALPHA_SUM_MAX} in {len(high)} countries (e.g. {high[0]})")
    if nonuniform < NONUNIFORM_MIN_SHARE:
        reasons.append(f"only {nonuniform:.1%} of large multi-zone countries non-uniform (< {NONUNIFORM_MIN_SHARE:.0%})"
                       + (f" among the {n_judged} whose people are not evenly spread" if even else ""))
    return {"passed": not reasons, "reasons": reasons, "alpha_sum_min": float(sums.min()),
            "alpha_sum_max": float(sums.max()), "nonuniform_share": nonuniform, "large_countries": n_large,
            "judged_countries": n_judged, "evenly_populated": even}
