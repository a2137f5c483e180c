"""The population evidence a run's fidelity is measured against (a pure value, no IO).

``zone_clocks``: the world's Z(c) rows with the clock each name denotes.
``clock_population``: every populated (country, clock) of the world's countries, from the GeoNames
cities, including clocks absent from Z(c) (that is what the outside-universe share measures).
``applicable``: the universe was built from this evidence (the default world). For a world that
brings its own universe (``--world``, ``--reference``) fidelity is reported, but its verdict is
NOT_APPLICABLE rather than a failure.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from engine.world.clocks import clock_population, clocks_of


@dataclass(frozen=True)
class FidelityEvidence:
    zone_clocks: pd.DataFrame        # country_iso, tzid, clock
    clock_population: pd.DataFrame   # country_iso, clock, population (> 0)
    applicable: bool


def fidelity_evidence(universe: pd.DataFrame, applicable: bool) -> FidelityEvidence:
    zones = universe[["country_iso", "tzid"]].copy().reset_index(drop=True)
    zones["clock"] = clocks_of(zones["tzid"])
    pop = clock_population()
    pop = pop[pop["country_iso"].isin(set(zones["country_iso"]))].reset_index(drop=True)
    return FidelityEvidence(zones, pop, bool(applicable))
