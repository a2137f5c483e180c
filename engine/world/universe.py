"""Zone universe Z(c) from the IANA tz database shipped in the ``tzdata`` package."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import re

import pandas as pd

from engine.errors import E_WORLD_INPUT, EngineError

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


def country_names() -> dict[str, str]:
    return {fields[0]: fields[1] for fields in _tab_lines("iso3166.tab")}


def tz_universe() -> pd.DataFrame:
    """zone.tab (country -> own zones) united with zone1970.tab (zone -> every country using it)."""
    pairs: set[tuple[str, str]] = set()
    for name in ("zone.tab", "zone1970.tab"):
        for fields in _tab_lines(name):
            for country in fields[0].split(","):
                pairs.add((country, fields[2]))
    frame = pd.DataFrame(sorted(pairs), columns=["country_iso", "tzid"])
    return frame


def validate_universe(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check a user-supplied universe (columns country_iso, tzid) and return it sorted, deduplicated."""
    missing = {"country_iso", "tzid"} - set(frame.columns)
    if missing:
        raise EngineError(E_WORLD_INPUT, f"{source}: zone universe lacks column(s) {sorted(missing)}")
    if frame.empty:
        raise EngineError(E_WORLD_INPUT, f"{source}: zone universe has no rows")
    if frame[["country_iso", "tzid"]].isna().any().any():
        raise EngineError(E_WORLD_INPUT, f"{source}: empty country_iso or tzid cell")
    frame = frame[["country_iso", "tzid"]].astype(str)
    bad_iso = frame.loc[~frame["country_iso"].str.match(ISO2), "country_iso"]
    if len(bad_iso):
        raise EngineError(E_WORLD_INPUT, f"{source}: invalid country code {bad_iso.iloc[0]!r}")
    known = known_tzids()
    unknown = sorted(set(frame["tzid"]) - known)
    if unknown:
        raise EngineError(E_WORLD_INPUT, f"{source}: unknown tzid {unknown[0]!r} ({len(unknown)} unknown)")
    if frame.duplicated().any():
        dup = frame[frame.duplicated()].iloc[0]
        raise EngineError(E_WORLD_INPUT, f"{source}: duplicate row {dup['country_iso']}/{dup['tzid']}")
    return frame.sort_values(["country_iso", "tzid"]).reset_index(drop=True)
