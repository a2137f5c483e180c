"""Measured facts of a world that the campaign's reasons quote, instead of sentences written for one world.

``world_facts(world)`` returns plain numbers and words, e.g. ``population_top1_median`` (the median, over the
countries S2's top-1 gates measure, of the largest clock's population share: what those gates measure on priors
that stay faithful to the population) beside the gates' own ceilings, and ``escalable_pair_share`` (the share of
merchant x country pairs S1 can escalate at all: two outlets or more in a country of two zones or more, so the
most the S1 escalation rate can reach).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine import GATES

S1_CORRIDOR = (0.55, 0.70)   # the plan's S1 escalation corridor (METRICS §12: reported, not gated)


def _threshold(gate_id: str) -> float:
    return next(float(g.threshold) for g in GATES if g.gate_id.startswith(gate_id))


def population_top1_median(world) -> float | None:
    """Median, over the countries S2's top-1 gates measure (two zones or more in Z(c)), of the top clock's share of
    the country's people; a zone nobody lives on is one of those zones, at a share of 0 (a faithful prior gives
    it nothing, so such a country's top-1 is 1.0)."""
    ev = world.evidence
    zc = ev.zone_clocks[["country_iso", "clock"]].drop_duplicates()
    pop = zc.merge(ev.clock_population, on=["country_iso", "clock"], how="left").fillna({"population": 0.0})
    per = pop.groupby("country_iso")["population"]
    zones = world.universe.groupby("country_iso").size()
    total = per.sum()
    multi = [c for c in zones[zones >= 2].index if total.get(c, 0.0) > 0]
    if not multi:
        return None
    return float(np.median((per.max() / total).loc[multi].to_numpy()))


def pair_sites(world, seed: int = 42) -> pd.DataFrame:
    """The catalogue's (merchant, country) pairs and their ``sites`` (the default world's synthetic one at
    ``seed``): one pass over the outlets, which a campaign reads for its size and its facts alike."""
    from engine import outlets_for

    return outlets_for(world, seed).groupby(["merchant_id", "legal_country_iso"]).size().rename("sites").reset_index()


def pair_shares(world, seed: int = 42, sites: pd.DataFrame | None = None) -> tuple[float, float]:
    """Shares of the catalogue's (merchant, country) pairs (a) in countries whose Z(c) holds two zones or more and
    (b) of those, holding two outlets or more: a pair of one outlet is never split across zones, so (b) is the
    most S1's escalation rate can reach whatever its rule thresholds (``sites``: :func:`pair_sites`, when known)."""
    sites = sites if sites is not None else pair_sites(world, seed)
    if not len(sites):
        return 0.0, 0.0
    k = world.universe.groupby("country_iso").size()
    multi = sites["legal_country_iso"].map(k).fillna(0).to_numpy() >= 2
    return float(multi.mean()), float((multi & (sites["sites"].to_numpy() >= 2)).mean())


# a value of each fact's type: a step's reason template is checked against these when the file is loaded
FACT_KINDS = {"world": "w", "population_top1_median": 0.5, "s2_bplus_ceiling": 0.5, "s2_b_ceiling": 0.5,
              "s2_bplus_vs_population": "below", "multi_clock_pair_share": 0.5, "escalable_pair_share": 0.5,
              "s1_corridor": "[0.55, 0.70]", "s1_corridor_reach": "reachable"}


def reason_problem(template: str) -> str | None:
    """Why a step's ``reason`` cannot be filled with the world's facts (an unknown ``{name}``, a bad format spec, an
    unclosed brace), or None."""
    try:
        template.format(**FACT_KINDS)
    except KeyError as exc:
        return f"unknown fact {{{exc.args[0]}}}; the facts are {', '.join(sorted(FACT_KINDS))}"
    except (ValueError, IndexError, AttributeError) as exc:
        return f"not a reason template ({exc}); write a literal brace as {{{{ or }}}}"
    return None


def world_facts(world, sites: pd.DataFrame | None = None) -> dict:
    top1 = population_top1_median(world)
    share, escalable = pair_shares(world, sites=sites)
    bplus, b = _threshold("3A-S01"), _threshold("3A-V01")
    return {
        "world": world.name, "population_top1_median": top1 if top1 is not None else float("nan"),
        "s2_bplus_ceiling": bplus, "s2_b_ceiling": b,
        "s2_bplus_vs_population": ("below" if top1 is not None and bplus < top1 else "at or above"),
        "multi_clock_pair_share": share, "escalable_pair_share": escalable,
        "s1_corridor": f"[{S1_CORRIDOR[0]:.2f}, {S1_CORRIDOR[1]:.2f}]",
        "s1_corridor_reach": "reachable" if escalable >= S1_CORRIDOR[0] else "unreachable",
    }
