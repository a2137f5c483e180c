"""Pooled fidelity (3A-F09, :mod:`engine.metrics.pooled`): each country's realised outlets summed over seeds against
its people. Golden values by hand, the pool against an independent pandas sum of the seeds' S4 tables, the order of
the seeds, and the merchant count a country needs to be read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine import PolicySet, default_world, run_chain
from engine.metrics.fidelity import jsd
from engine.metrics.pooled import (POOLED_JSD_MAX, POOLED_MIN_MERCHANTS, pool_outlets as pool, pooled_fidelity,
                                   seed_outlets)
from engine.world.evidence import FidelityEvidence
from tests.tuning.conftest import REPO

# one country, two clocks: 900 people on K/A, 100 on K/B; a one-clock country beside it (never read)
ZC = pd.DataFrame({"country_iso": ["XA", "XA", "XB"], "tzid": ["Z/A", "Z/B", "Z/C"], "clock": ["K/A", "K/B", "K/C"]})
POP = pd.DataFrame({"country_iso": ["XA", "XA", "XB"], "clock": ["K/A", "K/B", "K/C"], "population": [900, 100, 50]})
EVIDENCE = FidelityEvidence(ZC, POP, True)


def _s4(merchants: int, on_a: int, on_b: int) -> pd.DataFrame:
    """``merchants`` merchants of XA, the first holding ``on_a`` outlets on Z/A and ``on_b`` on Z/B, every other
    one outlet on Z/A; writer order (merchant, country, tzid)."""
    rows = [(1, "XA", "Z/A", on_a), (1, "XA", "Z/B", on_b)] + [(m, "XA", "Z/A", 1) for m in range(2, merchants + 1)]
    rows.append((merchants + 1, "XB", "Z/C", 7))
    return pd.DataFrame(rows, columns=["merchant_id", "legal_country_iso", "tzid", "zone_site_count"]).astype(
        {"merchant_id": np.uint64})


def test_a_country_is_read_once_its_pooled_merchants_reach_the_line_and_its_jsd_is_the_scalar_one():
    half = POOLED_MIN_MERCHANTS // 2
    seeds = [seed_outlets(_s4(half, 10, 30), EVIDENCE), seed_outlets(_s4(half, 20, 50), EVIDENCE)]
    out = pooled_fidelity(*pool(seeds, EVIDENCE), EVIDENCE)
    # pooled: K/A 10 + 20 + 2 * (half - 1) outlets, K/B 80, against 900 / 100 people
    on_a = 30 + 2 * (half - 1)
    assert out["countries"] == 1 and out["country"] == "XA" and out["seeds"] == 2
    assert out["jsd_max"] == pytest.approx(jsd(np.array([on_a, 80.0]), np.array([900.0, 100.0])), abs=1e-15)
    assert out["largest"] == [{"country": "XA", "jsd": out["jsd_max"], "merchants": 2 * half, "outlets": on_a + 80}]
    assert out["faithful"] == (out["jsd_max"] <= POOLED_JSD_MAX)
    fewer = pooled_fidelity(*pool(seeds[:1], EVIDENCE), EVIDENCE)   # half the merchants: not read, nothing measured
    assert fewer["countries"] == 0 and fewer["country"] is None and fewer["jsd_max"] == 0.0 and fewer["faithful"]


def test_outlets_that_follow_the_people_read_zero_and_steered_ones_fail_the_line():
    n = POOLED_MIN_MERCHANTS
    faithful = pooled_fidelity(*pool([seed_outlets(_s4(n, 900 - (n - 1), 100), EVIDENCE)], EVIDENCE), EVIDENCE)
    assert faithful["jsd_max"] == pytest.approx(0.0, abs=1e-12) and faithful["faithful"]
    steered = pooled_fidelity(*pool([seed_outlets(_s4(n, 0, 400), EVIDENCE)], EVIDENCE), EVIDENCE)   # K/B: 10% people, 57%
    assert steered["jsd_max"] > POOLED_JSD_MAX and not steered["faithful"]


@pytest.fixture(scope="module")
def chains():
    world, policies = default_world(), PolicySet.from_dir(REPO / "policies")
    return world, [run_chain(policies, seed, world).cores["s4"] for seed in range(1, 13)]


def test_the_pool_is_the_sum_of_the_seeds_outlets_by_clock_in_any_order(chains):
    world, tables = chains
    per_seed = [seed_outlets(s4, world.evidence) for s4 in tables]
    (keys, country, values), merchants, n = pool(per_seed, world.evidence)
    (keys_r, country_r, values_r), merchants_r, _ = pool(reversed(per_seed), world.evidence)
    assert n == 12 and keys.tolist() == keys_r.tolist() and values.tolist() == values_r.tolist()
    assert country.tolist() == country_r.tolist() and merchants == merchants_r
    # independently: every seed's S4 rows together, each zone's clock from the evidence, summed by pandas
    rows = pd.concat(tables, ignore_index=True).merge(world.evidence.zone_clocks, how="left",
                                                       left_on=["legal_country_iso", "tzid"],
                                                       right_on=["country_iso", "tzid"])
    want = rows.groupby(["legal_country_iso", "clock"])["zone_site_count"].sum()
    got = pd.Series(values, index=pd.MultiIndex.from_arrays([country, [k[len(c):] for k, c in zip(keys, country)]]))
    assert got.sort_index().to_dict() == {k: int(v) for k, v in want.sort_index().items()}
    # merchants: each seed's distinct (merchant, country) pairs, counted per country and added over the seeds
    counts = pd.concat([t[["merchant_id", "legal_country_iso"]].drop_duplicates()["legal_country_iso"]
                        for t in tables]).value_counts()
    assert merchants == {c: int(v) for c, v in counts.items()}


def test_the_shipped_authority_pools_faithful_on_these_seeds(chains):
    world, tables = chains
    out = pooled_fidelity(*pool((seed_outlets(s4, world.evidence) for s4 in tables), world.evidence), world.evidence)
    assert out["faithful"] and out["countries"] >= 1 and out["jsd_max"] < POOLED_JSD_MAX
    assert [r["jsd"] for r in out["largest"]] == sorted((r["jsd"] for r in out["largest"]), reverse=True)
