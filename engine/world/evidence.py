"""The population evidence a run's fidelity is measured against (a pure value, no IO).

``zone_clocks``: the world's Z(c) rows with the clock each name denotes.
``clock_population``: every populated (country, clock) of the world's countries, from the GeoNames
cities, including clocks absent from Z(c) (that is what the outside-universe share measures).
``authored_prior``: the prior share per (country, clock) of Z(c) that the authoring law gives the world's own population
(``engine.policies.authoring``: alphas from smoothed population shares, floors from zone presence, through S2), the
evidence-faithful prior gate 3A-F07 measures tuning's moves from; None where a caller builds evidence by hand.
``applicable``: the evidence covers this Z(c): the default world's GeoNames population, or the population
evidence a world directory brings (``population.csv``; ``clock_population`` is then the user's), or, for a world
that brings its own universe without evidence (``--reference``, an alpha pack), the GeoNames people on its own
clocks (:func:`geonames_on_own_clocks`). Only where GeoNames cannot grade such a world (an aliased Z(c), a country
it does not know) is fidelity reported with the verdict NOT_APPLICABLE rather than a failure.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pandas as pd

from engine.world.clocks import alias_count, clock_population, clocks_of


@dataclass(frozen=True)
class FidelityEvidence:
    zone_clocks: pd.DataFrame        # country_iso, tzid, clock
    clock_population: pd.DataFrame   # country_iso, clock, population (> 0)
    applicable: bool
    authored_prior: pd.DataFrame | None = None   # country_iso, clock, share (each country's sums to 1)

    @functools.cached_property
    def zone_people_shares(self) -> dict:
        """(country_iso, tzid) -> its clock's share of its country's people (:func:`zone_people_shares`), once."""
        return _zone_people_shares(self)

    @functools.cached_property
    def empty_zones(self) -> frozenset:
        """Zones on a clock without population in a country with some (:func:`empty_zones`), computed once."""
        lived = set(zip(self.clock_population["country_iso"], self.clock_population["clock"]))
        countries = {c for c, _ in lived}
        return frozenset((c, t) for c, t, k in zip(self.zone_clocks["country_iso"], self.zone_clocks["tzid"],
                                                   self.zone_clocks["clock"]) if c in countries and (c, k) not in lived)


def geonames_on_own_clocks(universe: pd.DataFrame) -> pd.DataFrame | None:
    """The evidence of a world that brings its own Z(c) and no population: the GeoNames people on its own clocks
    (country_iso, clock, population), what its authored policies are built from (``population_mass``); None where
    GeoNames cannot grade it: Z(c) lists two names of one clock (3A-F01 would fail whatever the policy), or a
    country of two clocks or more has no GeoNames people on any of them (a country GeoNames does not know). Our law:
    a grade is earned faithfully, so a world is graded against the evidence it is built from (helper 54 certified B+
    "FAITHFUL 100%" with a world's own alpha pack putting 24% of US outlets on clocks of 0.03% of its people,
    because such a world read NOT_APPLICABLE)."""
    if alias_count(universe):
        return None
    zones = universe[["country_iso"]].assign(clock=clocks_of(universe["tzid"]))
    people = clock_population().merge(zones, on=["country_iso", "clock"], how="inner")
    clocks = zones.groupby("country_iso")["clock"].nunique()
    if not set(clocks[clocks >= 2].index) <= set(people["country_iso"]):
        return None
    return people.sort_values(["country_iso", "clock"]).reset_index(drop=True)


def fidelity_evidence(universe: pd.DataFrame, applicable: bool,
                      own: pd.DataFrame | None = None, population: pd.DataFrame | None = None) -> FidelityEvidence:
    """``own``: the world's own per-clock evidence (country_iso, clock, population); GeoNames when None.
    ``population``: the world's population per universe row (country_iso, tzid, population), what the authoring law
    reads: given and applicable, the evidence carries the authored prior per clock."""
    zones = universe[["country_iso", "tzid"]].copy().reset_index(drop=True)
    zones["clock"] = clocks_of(zones["tzid"])
    pop = clock_population() if own is None else own
    pop = pop[pop["country_iso"].isin(set(zones["country_iso"]))].reset_index(drop=True)
    authored = authored_prior(universe, population, zones) if population is not None and applicable else None
    return FidelityEvidence(zones, pop, bool(applicable), authored)


def authored_prior(universe: pd.DataFrame, population: pd.DataFrame, zones: pd.DataFrame) -> pd.DataFrame:
    """The S2 prior share per (country, clock) of the policies the authoring law writes for ``population``."""
    from engine.policies.authoring import author_alphas, author_floors
    from engine.states.s2_priors import priors

    alphas = author_alphas(population)
    s2 = priors(universe, alphas, author_floors(population, alphas))
    keyed = s2[["country_iso", "tzid", "share_effective"]].merge(zones, on=["country_iso", "tzid"], how="left")
    out = keyed.groupby(["country_iso", "clock"], as_index=False, sort=True)["share_effective"].sum()
    return out.rename(columns={"share_effective": "share"})


# S4's second-zone safeguard forces ceil(min_second_zone_share * N) sites of a pair of N onto a zone only where the
# zone's clock holds at least that share of its country's people divided by this ratio (F07's allowance: 10 times)
FORCE_PEOPLE_RATIO = 10.0


def zone_people_shares(ev: FidelityEvidence | None) -> dict | None:
    """(country_iso, tzid) -> the share of its country's people the zone's clock holds (0 for a zone the evidence
    leaves empty), for the zones of every country the evidence has people in; None when the evidence is not
    applicable or absent. S4's second-zone safeguard reads it per pair (``engine.states.s4_counts``): helper 42's world
    (the US with 50 M people on New York, 1 to 20 on six other clocks) had one outlet of every merchant forced onto
    those clocks, 8% of the US's outlets, and helper 43 kept it so with a forced share of 1e-6 (still one outlet)."""
    if ev is None or not ev.applicable:
        return None
    return ev.zone_people_shares


def _zone_people_shares(ev: FidelityEvidence) -> dict:
    pop = ev.clock_population
    totals = pop.groupby("country_iso")["population"].sum()
    share = {(c, k): float(p) / float(totals[c]) for c, k, p in zip(pop["country_iso"], pop["clock"], pop["population"])}
    zc = ev.zone_clocks
    return {(c, t): share.get((c, k), 0.0) for c, t, k in zip(zc["country_iso"], zc["tzid"], zc["clock"])
            if c in totals.index}


def empty_zones(ev: FidelityEvidence | None) -> frozenset:
    """(country_iso, tzid) of the zones the evidence leaves empty in a country it has people in (what 3A-F02 counts
    as unpopulated): none when the evidence is not applicable or absent. S4's second-zone safeguard never forces
    outlets into one: it reads :func:`zone_people_shares`, where such a zone's share is 0."""
    return ev.empty_zones if ev is not None and ev.applicable else frozenset()
