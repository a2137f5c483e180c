"""A world that brings its own zone universe and no population is graded against the GeoNames people on its own clocks,
the evidence its authored policies are built from (helper 54: such a world read NOT_APPLICABLE, which certification
counts as faithful, and its own alpha pack put 24% of US outlets on clocks of 0.03% of its people, certified B+
"FAITHFUL 100%"). Where GeoNames cannot grade it (two names of one clock, a country of two clocks GeoNames has no
people on), fidelity stays NOT_APPLICABLE."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from engine import run_chain
from engine.metrics import fidelity_verdict
from engine.policies.world_baseline import authored_baseline
from engine.world.clocks import clock_population, clocks_of
from engine.world.model import load_world

US = ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Juneau",
      "America/Indiana/Vincennes", "America/North_Dakota/New_Salem"]
SMALL = US[4:]


def _world(tmp_path: Path, universe: list[tuple[str, str]], name: str = "w") -> Path:
    d = tmp_path / name
    d.mkdir()
    pd.DataFrame(universe, columns=["country_iso", "tzid"]).to_csv(d / "universe.csv", index=False)
    countries = sorted({c for c, _ in universe})
    rows = ["merchant_id,legal_country_iso,site_count"] + [f"{i},{countries[i % len(countries)]},{3 + i % 17}"
                                                          for i in range(900)]
    (d / "outlets.csv").write_text("\n".join(rows) + "\n")
    return d


def test_its_evidence_is_geonames_people_on_its_own_clocks_and_nothing_outside(tmp_path):
    """The US of seven clocks: the evidence holds exactly GeoNames' people on those clocks (none on the US's other
    clocks, so 3A-F05 reads what the world lists, not what it leaves out)."""
    world = load_world(_world(tmp_path, [("US", z) for z in US]))
    assert world.fidelity_applicable and world.evidence.applicable
    ev = world.evidence.clock_population
    clocks = set(clocks_of(pd.Series(US)))
    geonames = clock_population()
    want = geonames[(geonames["country_iso"] == "US") & geonames["clock"].isin(clocks)]
    assert set(ev["clock"]) == clocks and ev["population"].sum() == want["population"].sum()
    assert (geonames[geonames["country_iso"] == "US"]["population"].sum() > ev["population"].sum())


def test_its_authored_baseline_is_faithful_and_an_alpha_pack_on_its_small_clocks_is_distorted(tmp_path):
    world = load_world(_world(tmp_path, [("US", z) for z in US]))
    base = authored_baseline(world)
    assert fidelity_verdict(run_chain(base, 42, world).gates) == "FAITHFUL"
    alphas = base.doc("country_zone_alphas")
    skewed = {**alphas, "countries": {"US": {"tzid_alphas": [
        {"tzid": e["tzid"], "alpha": 8.0 if e["tzid"] in SMALL else e["alpha"]}
        for e in alphas["countries"]["US"]["tzid_alphas"]]}}}
    res = run_chain(base.with_documents(country_zone_alphas=skewed), 42, world)
    s4 = res.tables["s4"]
    small = s4.loc[s4["tzid"].isin(SMALL), "zone_site_count"].sum() / s4["zone_site_count"].sum()
    assert small > 0.05                                     # outlets moved onto clocks of a few people...
    assert fidelity_verdict(res.gates) == "DISTORTED"      # ...read as such, not NOT_APPLICABLE


@pytest.mark.parametrize("universe, why", [
    ([("NL", "Europe/Amsterdam"), ("NL", "Europe/Brussels"), ("FR", "Europe/Paris")], "two names of one clock"),
    ([("AQ", "Antarctica/Casey"), ("AQ", "Antarctica/Davis"), ("FR", "Europe/Paris")], "a country of no people"),
])
def test_a_world_geonames_cannot_grade_stays_not_applicable(tmp_path, universe, why):
    world = load_world(_world(tmp_path, universe))
    assert not world.fidelity_applicable and not world.evidence.applicable, why
    assert fidelity_verdict(run_chain(authored_baseline(world), 42, world).gates) == "NOT_APPLICABLE"
