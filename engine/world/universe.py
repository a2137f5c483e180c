"""Zone universe Z(c): the clocks of the IANA tz database (``tzdata``) on which each country has people.

The default universe is population-true (``engine.world.clocks``): one published name per
populated clock, tzdata links resolved. The first version united ``zone.tab`` with
``zone1970.tab``, which made ~90 countries "multi-zone" through link aliases; superseded.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import re

import pandas as pd

from engine.core.errors import E_WORLD_INPUT, EngineError
from engine.world.clocks import population_true_universe
from engine.world.columns import require_columns

ISO2 = re.compile(r"^[A-Z]{2}$")
TZID = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$")


def _tab_lines(name: str) -> list[list[str]]:
    text = importlib.resources.files("tzdata").joinpath("zoneinfo", name).read_text(encoding="utf-8")
    return [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]


def tzdata_version() -> str:
    return importlib.metadata.version("tzdata")


def known_tzids() -> frozenset[str]:
    """Every zone name the shipped tz database knows (canonical zones and links)."""
    names = set()
    for line in importlib.resources.files("tzdata").joinpath("zoneinfo", "tzdata.zi").read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "Z":
            names.add(parts[1])
        elif parts and parts[0] == "L":
            names.add(parts[2])
    return frozenset(names)


NOT_A_CLOCK = frozenset({"Factory"})   # tzdata's placeholder ("-00": local time not set); nobody lives on it


def refuse_unknown_tzids(tzids, source: str) -> None:
    """One coded line for the first tzid of a world part the shipped tz database does not know, or knows only as
    its placeholder zone (a population on ``Factory`` was counted as a clock of its own)."""
    names = set(tzids)
    placeholder = sorted(names & NOT_A_CLOCK)
    if placeholder:
        raise EngineError(E_WORLD_INPUT, f"{source}: tzid {placeholder[0]!r} is tzdata's placeholder zone (local "
                                         f"time not set), not a clock anyone lives on")
    unknown = sorted(names - known_tzids())
    if unknown:
        raise EngineError(E_WORLD_INPUT, f"{source}: unknown tzid {unknown[0]!r} ({len(unknown)} unknown)")


# GeoNames files Kosovo under the user-assigned code XK, which iso3166.tab does not list.
EXTRA_COUNTRY_NAMES = {"XK": "Kosovo"}


def country_names() -> dict[str, str]:
    return {**EXTRA_COUNTRY_NAMES, **{fields[0]: fields[1] for fields in _tab_lines("iso3166.tab")}}


def tz_universe() -> pd.DataFrame:
    """The default Z(c): one row per (country, populated clock), published names (see clocks.py)."""
    return population_true_universe().copy()


def validate_universe(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check a user-supplied universe (columns country_iso, tzid) and return it sorted, deduplicated."""
    require_columns(frame, {"country_iso", "tzid"}, "zone universe", source)
    if frame.empty:
        raise EngineError(E_WORLD_INPUT, f"{source}: zone universe has no rows")
    if frame[["country_iso", "tzid"]].isna().any().any():
        raise EngineError(E_WORLD_INPUT, f"{source}: empty country_iso or tzid cell")
    frame = frame[["country_iso", "tzid"]].astype(str)
    bad_iso = frame.loc[~frame["country_iso"].str.fullmatch(ISO2), "country_iso"]
    if len(bad_iso):
        raise EngineError(E_WORLD_INPUT, f"{source}: invalid country code {bad_iso.iloc[0]!r} (two upper-case letters, "
                                         f"ISO 3166-1 alpha-2, no spaces)")
    refuse_unknown_tzids(frame["tzid"], source)
    if frame.duplicated().any():
        dup = frame[frame.duplicated()].iloc[0]
        raise EngineError(E_WORLD_INPUT, f"{source}: duplicate row {dup['country_iso']}/{dup['tzid']}")
    return frame.sort_values(["country_iso", "tzid"]).reset_index(drop=True)
