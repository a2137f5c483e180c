"""Measured facts of a world that the campaign's reasons quote, instead of sentences written for one world.

``world_facts(world)`` returns plain numbers and words, e.g. ``population_top1_median`` (the median over
countries with two or more populated clocks in Z(c) of the largest clock's population share: what S2's
top-1 gates ask of priors that stay faithful to the population) beside the gates' own ceilings, and
``multi_clock_pair_share`` (the share of merchant x country pairs in such countries: the only pairs S1 can
escalate, so the most the S1 escalation rate can reach).
"""

from __future__ import annotations

import numpy as np

from engine import GATES

S1_CORRIDOR = (0.55, 0.70)   # the plan's S1 escalation corridor (METRICS §12: reported, not gated)


def _threshold(gate_id: str) -> float:
    return next(float(g.threshold) for g in GATES if g.gate_id.startswith(gate_id))


def population_top1_median(world) -> float | None:
    """Median over countries with >= 2 populated clocks of Z(c) of the top clock's population share."""
    ev = world.evidence
    zc = ev.zone_clocks[["country_iso", "clock"]].drop_duplicates()
    pop = zc.merge(ev.clock_population, on=["country_iso", "clock"], how="left").fillna({"population": 0.0})
    pop = pop[pop["population"] > 0]
    per = pop.groupby("country_iso")["population"]
    multi = per.size()[per.size() >= 2].index
    if len(multi) == 0:
        return None
    top1 = (per.max() / per.sum()).loc[multi]
    return float(np.median(top1.to_numpy()))


def multi_clock_pair_share(world, seed: int = 42) -> float:
    """Share of the catalogue's (merchant, country) pairs in countries whose Z(c) holds two or more zones."""
    from engine import outlets_for

    cat = outlets_for(world, seed)
    pairs = cat[["merchant_id", "legal_country_iso"]].drop_duplicates()
    k = world.universe.groupby("country_iso").size()
    return float((pairs["legal_country_iso"].map(k).fillna(0).to_numpy() >= 2).mean()) if len(pairs) else 0.0


def world_facts(world) -> dict:
    top1 = population_top1_median(world)
    share = multi_clock_pair_share(world)
    bplus, b = _threshold("3A-S01"), _threshold("3A-V01")
    return {
        "world": world.name, "population_top1_median": top1 if top1 is not None else float("nan"),
        "s2_bplus_ceiling": bplus, "s2_b_ceiling": b,
        "s2_bplus_vs_population": ("below" if top1 is not None and bplus < top1 else "at or above"),
        "multi_clock_pair_share": share,
        "s1_corridor": f"[{S1_CORRIDOR[0]:.2f}, {S1_CORRIDOR[1]:.2f}]",
        "s1_corridor_reach": "reachable" if share >= S1_CORRIDOR[0] else "unreachable",
    }
