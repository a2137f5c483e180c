"""The chain as a declared state table: derived content keys, declared reads only, lazy bytes."""

import typing
from pathlib import Path

import pandas as pd
import pytest
import yaml

from engine import STATE_TABLE, ChainCache, EngineError, run_chain
from engine.chain.steps import PolicyRead
from engine.policies.authoring import dump_yaml
from engine.states import s1_escalation
from engine.chain.table import Reads, State, state_table_md
from engine.world.model import default_world, outlets_for

ROOT = Path(__file__).resolve().parents[2]


def test_every_state_declares_its_reads_and_all_reads_are_produced_upstream_or_inputs():
    produced = {"seed", "world", "catalogue_source", "universe", "universe_digest", "evidence", "policy_set",
                "realism_mode", "fraction", "partitions"}
    for state in STATE_TABLE:
        assert set(state.reads) <= produced, state.name
        produced |= set(state.outputs)
    assert {"identity", "cores", "pack", "gates", "structural_status"} <= produced


def test_an_undeclared_read_fails_loudly(policies):
    sneaky = State("S9", ("seed",), (PolicyRead("zone_mixture_policy", ("theta_mix",)),), ("x",),
                   lambda r: (r.policy("zone_mixture_policy")["rules"],))
    with pytest.raises(EngineError) as err:
        sneaky.fn(Reads(sneaky, {"seed": 1}, policies))
    assert err.value.code == "E3A_CHAIN_001_UNDECLARED_READ"
    peeking = State("S9", ("seed",), (), ("x",), lambda r: (r["universe"],))
    with pytest.raises(EngineError):
        peeking.fn(Reads(peeking, {"seed": 1, "universe": None}, policies))


def test_keys_follow_content_not_object_identity(policies):
    """The same catalogue content in a new object is served from the cache; the same object changed in
    place is not (a key on id() would serve the stale seal)."""
    world, cache = default_world(), ChainCache()
    cat = outlets_for(world, 42)
    first = run_chain(policies, 42, world, outlets=cat, cache=cache)
    again = run_chain(policies, 42, world, outlets=cat.copy(deep=True), cache=cache)
    assert "S0.world" in again.reused and again.identity == first.identity
    cat.loc[cat.index[0], "merchant_id"] = int(cat["merchant_id"].max()) + 1   # mutate in place
    changed = run_chain(policies, 42, world, outlets=cat, cache=cache)
    assert "S0.world" not in changed.reused
    assert changed.identity["manifest_fingerprint"] != first.identity["manifest_fingerprint"]


def test_a_section_a_state_does_not_read_leaves_its_key_alone(policies):
    cache = ChainCache()
    run_chain(policies, 42, cache=cache)
    mix = yaml.safe_load(policies.raw["zone_mixture_policy"])
    mix["s4_safeguards"] = dict(mix.get("s4_safeguards") or {}, enabled=False)
    res = run_chain(policies.replace(zone_mixture_policy=dump_yaml(mix)), 42, cache=cache)
    assert {"S1", "S2", "S3"} <= res.reused and "S4" not in res.reused


def test_escalate_returns_what_it_is_annotated_to_return():
    hint = typing.get_type_hints(s1_escalation.escalate)["return"]
    assert typing.get_origin(hint) is tuple
    world = default_world()
    out = s1_escalation.escalate(s1_escalation.pair_counts(outlets_for(world, 1, 50)),
                                 world.universe.groupby("country_iso").size(),
                                 {"rules": [], "theta_mix": 0.5}, bytes(32))
    assert isinstance(out, tuple) and isinstance(out[0], pd.DataFrame) and isinstance(out[1], int)


def test_the_architecture_page_shows_the_state_table():
    assert state_table_md(STATE_TABLE) in (ROOT / "docs" / "ARCHITECTURE.md").read_text()


def test_scoring_builds_no_bytes_and_its_verdict_is_the_published_one(policies):
    from engine.policies import PolicySet
    from engine.policies.authoring import author_policies

    authored = PolicySet(author_policies(default_world().population), "authored")
    for pol, mode, status in ((policies, "observe", "PASS"), (authored, "block", "FAIL")):
        res = run_chain(pol, 42, realism_mode=mode)
        assert not res.bundled and res.s6_status == status and res.s7_status == status
        assert res.pack is not None and res.seconds["S5"] == res.seconds["S7"] == 0.0
        assert res.s6_report["overall_status"] == status and res.bundled     # the bytes, on first read
        assert res.s7["status"] == status and res.seconds["S7"] > 0.0


def test_in_order_agrees_with_a_stable_sort():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from engine.chain.steps import _in_order

    rows = st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["AT", "BE", "DE"]), st.integers(0, 2)),
                    min_size=0, max_size=12)

    @settings(max_examples=200, deadline=None)
    @given(rows)
    def check(data):
        frame = pd.DataFrame(data, columns=["merchant_id", "legal_country_iso", "site_order"])
        frame = frame.astype({"merchant_id": "uint64", "legal_country_iso": "str", "site_order": "uint32"})
        keys = ["merchant_id", "legal_country_iso", "site_order"]
        sorted_ = frame.sort_values(keys, kind="mergesort")
        assert _in_order(frame, keys) == sorted_.index.equals(frame.index)

    check()


def test_the_default_execution_splits_only_a_large_world_and_never_changes_bytes(policies, baseline):
    from engine.chain.steps import AUTO_PARTITION_PAIRS, execution, map_in_process, map_in_threads

    assert execution(None, None, AUTO_PARTITION_PAIRS - 1) == (1, map_in_process)
    k, mapper = execution(None, None, AUTO_PARTITION_PAIRS)
    assert k >= 1 and mapper is (map_in_threads if k > 1 else map_in_process)
    threaded = run_chain(policies, 42, partitions=3, mapper=map_in_threads)
    assert threaded.flag == baseline.flag


def test_a_plan_laid_out_in_other_ranges_is_never_reused(policies):
    # the plan's merchant ranges are its layout (S4.rounding keeps a list per range): a run with another
    # partitioning draws its own plan, so a cached plan or roundings of another layout never meet its ranges
    cache = ChainCache()
    three = run_chain(policies, 42, cache=cache, partitions=3)
    one = run_chain(policies, 42, cache=cache, partitions=1)
    assert not {"S3.plan", "S3", "S4.rounding", "S4"} & one.reused and {"S1", "S2", "S3.keys"} <= one.reused
    assert one.flag == three.flag
    assert {"S3.plan", "S4.rounding", "S4"} <= run_chain(policies, 42, cache=cache, partitions=3).reused
