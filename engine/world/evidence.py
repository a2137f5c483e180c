"""The population evidence a run's fidelity is measured against (a pure value, no IO).

``zone_clocks``: the world's Z(c) rows with the clock each name denotes.
``clock_population``: every populated (country, clock) of the world's countries, from the GeoNames
cities, including clocks absent from Z(c) (that is what the outside-universe share measures).
``applicable``: the evidence covers this Z(c): the default world's GeoNames population, or the population
evidence a world directory brings (``population.csv``; ``clock_population`` is then the user's). For a
world that brings its own universe without evidence (``--reference``, an alpha pack) fidelity is
reported, but its verdict is NOT_APPLICABLE rather than a failure.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pandas as pd

from engine.world.clocks import clock_population, clocks_of


@dataclass(frozen=True)
class FidelityEvidence:
    zone_clocks: pd.DataFrame        # country_iso, tzid, clock
    clock_population: pd.DataFrame   # country_iso, clock, population (> 0)
    applicable: bool

    @functools.cached_property
    def empty_zones(self) -> frozenset:
        """Zones on a clock without population in a country with some (:func:`empty_zones`), computed once."""
        lived = set(zip(self.clock_population["country_iso"], self.clock_population["clock"]))
        countries = {c for c, _ in lived}
        return frozenset((c, t) for c, t, k in zip(self.zone_clocks["country_iso"], self.zone_clocks["tzid"],
                                                   self.zone_clocks["clock"]) if c in countries and (c, k) not in lived)


def fidelity_evidence(universe: pd.DataFrame, applicable: bool,
                      own: pd.DataFrame | None = None) -> FidelityEvidence:
    """``own``: the world's own per-clock evidence (country_iso, clock, population); GeoNames when None."""
    zones = universe[["country_iso", "tzid"]].copy().reset_index(drop=True)
    zones["clock"] = clocks_of(zones["tzid"])
    pop = clock_population() if own is None else own
    pop = pop[pop["country_iso"].isin(set(zones["country_iso"]))].reset_index(drop=True)
    return FidelityEvidence(zones, pop, bool(applicable))


def empty_zones(ev: FidelityEvidence | None) -> frozenset:
    """(country_iso, tzid) of the zones the evidence leaves empty in a country it has people in (what 3A-F02 counts
    as unpopulated): none when the evidence is not applicable or absent. S4's second-zone safeguard never forces
    outlets into one (``engine.states.s4_counts``)."""
    return ev.empty_zones if ev is not None and ev.applicable else frozenset()
