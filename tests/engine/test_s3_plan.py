"""S3.plan: the policy-free draws of S3/S4, laid out on the universe and shared by every candidate of a seed."""

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings, strategies as st

from engine.chain.runner import ChainCache, run_chain
from engine.core.errors import EngineError
from engine.core.rng import pair_keys, uniforms
from engine.policies.authoring import dump_yaml
from engine.states import s3_shares
from engine.states.common import zone_layout
from engine.states.s3_plan import check_prior_surface, draw_plan, missing_countries, zone_table

UNIVERSE = pd.DataFrame({"country_iso": ["BB", "AA", "AA", "BB", "BB"],
                         "tzid": ["Z/q", "Z/b", "Z/a", "Z/p", "Z/r"]})
S1 = pd.DataFrame({"merchant_id": np.array([1, 1, 2], dtype=np.uint64), "legal_country_iso": ["AA", "BB", "BB"],
                   "site_count": [4, 9, 3], "is_escalated": [True, True, False]})


def test_the_zone_table_is_the_universe_in_country_then_tzid_order():
    zones = zone_table(UNIVERSE)
    assert list(zip(zones["country_iso"], zones["tzid"])) == [("AA", "Z/a"), ("AA", "Z/b"), ("BB", "Z/p"),
                                                              ("BB", "Z/q"), ("BB", "Z/r")]
    assert missing_countries(S1, zones) == []
    assert missing_countries(S1.assign(legal_country_iso=["AA", "CC", "CC"]), zones) == ["CC"]


def test_the_plan_draws_one_keyed_uniform_per_pair_and_zone():
    master = b"\x07" * 32
    plan = draw_plan(zone_layout(S1, zone_table(UNIVERSE)), master)
    # independently: pair (1, AA) has 2 zones (counters 0, 1), pair (1, BB) has 3 (counters 0, 1, 2)
    keys = pair_keys(master, "zone_dirichlet", [1, 1], ["AA", "BB"])
    expected = uniforms(keys[[0, 0, 1, 1, 1]], np.array([0, 1, 0, 1, 2], dtype=np.uint64))
    assert plan.u.tobytes() == expected.tobytes()
    assert plan.key_columns["tzid"].tolist() == ["Z/a", "Z/b", "Z/p", "Z/q", "Z/r"]
    assert plan.row_stream_id.tolist() == [plan.stream_ids[0]] * 2 + [plan.stream_ids[1]] * 3
    jitter = plan.pair_uniforms("s3_jitter")
    assert jitter is plan.pair_uniforms("s3_jitter")        # drawn once per plan
    assert jitter.tobytes() == uniforms(pair_keys(master, "s3_jitter", [1, 1], ["AA", "BB"]),
                                        np.zeros(2, dtype=np.uint64)).tobytes()


@pytest.mark.parametrize("change", ["drop", "reorder"])
def test_priors_that_are_not_the_plans_zone_rows_are_refused(change):
    zones = zone_table(UNIVERSE)
    plan = draw_plan(zone_layout(S1, zones), b"\x01" * 32)
    s2 = zones.assign(alpha_effective=1.0, alpha_sum_country=[2.0, 2.0, 3.0, 3.0, 3.0])
    check_prior_surface(plan, s2)
    bad = s2.iloc[:-1] if change == "drop" else s2.iloc[[1, 0, 2, 3, 4]].reset_index(drop=True)
    with pytest.raises(EngineError) as err:
        s3_shares.draw_shares(plan, bad, {})
    assert err.value.code == "E3A_S3_003_PRIOR_SURFACE_INCOMPLETE"


def test_candidates_of_one_seed_share_the_plan_and_still_draw_their_own_shares(policies):
    cache = ChainCache()
    base = run_chain(policies, 42, cache=cache)
    doc = yaml.safe_load(policies.raw["country_zone_alphas"])
    country = next(c for c, block in doc["countries"].items() if len(block["tzid_alphas"]) > 1)
    doc["countries"][country]["tzid_alphas"][0]["alpha"] *= 5.0
    cand = run_chain(policies.replace(country_zone_alphas=dump_yaml(doc)), 42, cache=cache)
    assert "S3.plan" in cand.reused and "S3" not in cand.reused
    s3_base, s3_cand = base.cores["s3"], cand.cores["s3"]
    assert s3_base["rng_stream_id"].tolist() == s3_cand["rng_stream_id"].tolist()   # common random numbers
    moved = (s3_cand["legal_country_iso"] == country).to_numpy()
    assert not np.array_equal(s3_base["share_drawn"].to_numpy()[moved], s3_cand["share_drawn"].to_numpy()[moved])
    other = run_chain(policies, 7, cache=cache)
    assert "S3.plan" not in other.reused                                            # a new seed draws anew


def test_a_plan_from_the_seeds_keyring_draws_what_a_plan_hashed_alone_draws():
    # the keyring computes a pair's keys on first use and keeps them: two S1 outcomes of one seed (different
    # escalated subsets of the domain) each get the plan they would get alone, in either order
    from engine.states.s3_plan import keyring, plan_for

    zones, master = zone_table(UNIVERSE), b"\x05" * 32
    ring = keyring(S1[["merchant_id", "legal_country_iso", "site_count"]], master)
    for escalated in ([True, True, False], [False, True, True], [True, True, True]):
        s1 = S1.assign(is_escalated=escalated)
        alone = draw_plan(zone_layout(s1, zones), master)
        shared = plan_for(s1, zones, master, ring)
        assert shared.u.tobytes() == alone.u.tobytes() and shared.stream_ids.tolist() == alone.stream_ids.tolist()
        assert shared.pair_uniforms("s4_rounding").tobytes() == alone.pair_uniforms("s4_rounding").tobytes()
    # a merchant range keeps its rows' positions in the domain (the chain's partitions are iloc slices)
    tail = S1.assign(is_escalated=[True, True, True]).iloc[1:]
    assert plan_for(tail, zones, master, ring).u.tobytes() == draw_plan(zone_layout(tail, zones), master).u.tobytes()
    with pytest.raises(EngineError) as err:   # rows that are not the domain's the ring was laid over
        plan_for(tail.reset_index(drop=True), zones, master, ring)
    assert err.value.code == "E3A_S3_004_PLAN_DOMAIN"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.sampled_from(["AA", "BB", "FR", ""])), min_size=1,
                max_size=30), st.data())
def test_the_keyring_gives_each_pairs_own_keys_whatever_was_asked_before(pairs, data):
    from engine.core.rng import Keyring

    mids = np.array([m for m, _ in pairs], dtype=np.uint64)
    countries = np.array([c for _, c in pairs], dtype=object)
    ring = Keyring(b"\x09" * 32, mids, countries)
    for _ in range(3):
        rows = np.array(data.draw(st.lists(st.integers(0, len(pairs) - 1), max_size=len(pairs))), dtype=np.int64)
        want = pair_keys(b"\x09" * 32, "zone_dirichlet", mids[rows].tolist(), countries[rows].tolist())
        assert np.array_equal(ring.keys("zone_dirichlet", rows), want.reshape(-1, 4))
