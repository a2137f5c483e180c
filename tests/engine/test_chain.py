"""Chain invariants: conservation, sum-to-one, domain parity, determinism, partitioning, the cache."""

import numpy as np
import pandas as pd
import pytest
import yaml
from pathlib import Path

from engine.chain.runner import run_chain
from engine.policies.authoring import dump_yaml
from engine.world.model import default_world, outlets_for

PAIR = ["merchant_id", "legal_country_iso"]
TRIP = PAIR + ["tzid"]


def test_structural_rails_pass(baseline):
    assert baseline.s6_report["overall_status"] == "PASS"
    assert baseline.s7["status"] == "PASS" and baseline.flag.startswith("sha256_hex = ")
    assert all(c["affected_count"] == 0 for c in baseline.s6_report["checks"])


def test_conservation_shares_and_domains(baseline):
    t = baseline.tables
    s1 = t["s1"]
    esc = s1[s1["is_escalated"]]
    # counts conserved per pair against S1's site_count
    got = t["s4"].groupby(PAIR)["zone_site_count"].sum()
    want = esc.set_index(PAIR)["site_count"]
    assert got.reindex(want.index).tolist() == want.tolist()
    assert (t["zone_alloc"]["zone_site_count"].to_numpy() == t["s4"]["zone_site_count"].to_numpy()).all()
    # shares sum to one within 1e-12
    sums = t["s3"].groupby(PAIR)["share_drawn"].sum()
    assert np.abs(sums - 1).max() <= 1e-12
    # domain parity: S3 = S4 = zone_alloc = D_esc x Z(c)
    expected = esc[PAIR].merge(t["s2"][["country_iso", "tzid"]], left_on="legal_country_iso",
                               right_on="country_iso")[TRIP].sort_values(TRIP).reset_index(drop=True)
    for name in ("s3", "s4", "zone_alloc"):
        assert t[name][TRIP].reset_index(drop=True).equals(expected.astype(t[name][TRIP].dtypes.to_dict()))
    assert set(map(tuple, t["s3"][PAIR].drop_duplicates().to_numpy())) == set(map(tuple, esc[PAIR].to_numpy()))


def test_same_inputs_same_bytes(policies, baseline):
    again = run_chain(policies, 42)
    assert again.flag == baseline.flag
    assert [(m.logical_id, m.data) for m in again.members] == [(m.logical_id, m.data) for m in baseline.members]


def test_row_order_and_partitioning_do_not_change_draws(policies, baseline):
    world = default_world()
    cat = outlets_for(world, 42)
    shuffled = cat.sample(frac=1.0, random_state=3).reset_index(drop=True)
    res = run_chain(policies, 42, world, outlets=shuffled)
    for name in ("s3", "s4", "zone_alloc"):
        cols = [c for c in res.tables[name].columns if c not in ("routing_universe_hash",)]
        pd.testing.assert_frame_equal(res.tables[name][cols], baseline.tables[name][cols])
    # the merchants in two halves (and in three): byte-identical rows and flag
    for k in (2, 3):
        part = run_chain(policies, 42, world, partitions=k)
        assert part.flag == baseline.flag
        for name in ("s3", "s4", "zone_alloc"):
            pd.testing.assert_frame_equal(part.tables[name], baseline.tables[name])


def test_common_random_numbers_across_policies(policies, baseline):
    """The uniforms do not depend on the policy: with dispersion off, a uniform change of alpha scale
    maps each pair's shares continuously; here a different floor policy keeps the same event keys."""
    doc = yaml.safe_load(policies.raw["zone_floor_policy"])
    for f in doc["floors"]:
        f["floor_value"] = round(f["floor_value"] * 1.5, 6)
    cand = policies.replace(zone_floor_policy=dump_yaml(doc))
    res = run_chain(cand, 42)
    assert res.identity["parameter_hash"] != baseline.identity["parameter_hash"]
    assert res.events["rng_stream_id"].tolist() == baseline.events["rng_stream_id"].tolist()


def test_cache_floor_change_reuses_world_seal_and_s1(policies, cache):
    run_chain(policies, 42, cache=cache)
    doc = yaml.safe_load(policies.raw["zone_floor_policy"])
    doc["floors"][0]["floor_value"] = doc["floors"][0]["floor_value"] + 0.25
    cand = policies.replace(zone_floor_policy=dump_yaml(doc))
    res = run_chain(cand, 42, cache=cache)
    # S2 -> S7 recomputed (S3 from the seed's ready-drawn plan); S0 re-seals the changed policy set
    assert res.reused == {"S0.world", "S1.domain", "S1", "S3.keys", "S3.plan", "metrics.s1"}
    again = run_chain(cand, 42, cache=cache)
    assert again.reused == {"S0.world", "S1.domain", "S1", "S2", "S3.keys", "S3.plan", "S3", "S4.rounding", "S4",
                            "metrics.s1", "metrics.s2", "metrics.s3", "metrics.prior", "S6.upstream"}
    assert again.flag == res.flag
    # an S3-only change reuses S1 and S2, recomputes S3 onwards
    mix = yaml.safe_load(policies.raw["zone_mixture_policy"])
    mix["s3_dispersion"].update(enabled=True, concentration_scale=0.5)
    res3 = run_chain(policies.replace(zone_mixture_policy=dump_yaml(mix)), 42, cache=cache)
    assert res3.reused == {"S0.world", "S1.domain", "S1", "S2", "S3.keys", "S3.plan", "metrics.s1", "metrics.s2",
                           "metrics.prior"}


@pytest.mark.parametrize("seed", [42, 7])
def test_s4_candidates_share_the_rounding_and_equal_a_run_without_a_cache(policies, cache, seed):
    # S4.rounding reads S3's shares only: every safeguard candidate of a seed reuses it (and S6's checks of S1-S3),
    # and each candidate's tables, S6 findings and seal equal its own run from scratch (the rank by share, drawn on
    # first use, is kept with it)
    run_chain(policies, seed, cache=cache)
    mix = yaml.safe_load(policies.raw["zone_mixture_policy"])
    for i, (forced, stochastic) in enumerate(((1, False), (2, True), (0, True), (2, False))):
        doc = dict(mix, s4_safeguards=dict(mix["s4_safeguards"], enabled=True, site_threshold=2 + i,
                                           min_second_zone_share=0.05 * (i + 1), max_forced_zones=forced,
                                           stochastic_rounding=stochastic))
        cand = policies.replace(zone_mixture_policy=dump_yaml(doc))
        res = run_chain(cand, seed, cache=cache)
        assert {"S3", "S4.rounding", "S6.upstream"} <= res.reused and "S4" not in res.reused
        fresh = run_chain(cand, seed)
        found, alone = res.publish_inputs.s6_core, fresh.publish_inputs.s6_core
        assert (found.rows, found.counts, found.metrics) == (alone.rows, alone.counts, alone.metrics)
        assert res.flag == fresh.flag and res.cores["s4"].equals(fresh.cores["s4"]) and res.counters == fresh.counters


def test_an_s1_change_reuses_the_domain_and_its_drawn_uniforms(policies, cache):
    run_chain(policies, 42, cache=cache)
    mix = yaml.safe_load(policies.raw["zone_mixture_policy"])
    mix["theta_mix"] = 0.15 if float(mix["theta_mix"]) != 0.15 else 0.6
    res = run_chain(policies.replace(zone_mixture_policy=dump_yaml(mix)), 42, cache=cache)
    assert "S1.domain" in res.reused and "S1" not in res.reused and "S3.plan" not in res.reused
    assert "S3.keys" in res.reused   # the seed's keys: only the pairs newly escalated are hashed
    assert res.flag == run_chain(policies.replace(zone_mixture_policy=dump_yaml(mix)), 42).flag   # cold cache


def test_seed_changes_draws_not_priors(policies, baseline):
    other = run_chain(policies, 7)
    assert other.identity["run_id"] != baseline.identity["run_id"]
    pd.testing.assert_frame_equal(other.tables["s2"].drop(columns=[]), baseline.tables["s2"])


def test_rng_evidence_is_canonical_json_and_accounts_every_draw(baseline):
    import json

    from engine.core.hashing import canonical_json

    members = {m.logical_id: m.data for m in baseline.members}
    events = members["rng_event_zone_dirichlet"].decode().splitlines()
    trace = members["rng_trace_log"].decode().splitlines()
    for line in events[:50] + trace[:50]:
        assert canonical_json(json.loads(line)).decode() == line
    esc = baseline.tables["s1"]["is_escalated"].sum()
    assert len(events) == esc == len(trace)
    last = json.loads(trace[-1])
    draws = sum(int(json.loads(e)["draws"]) for e in events)
    assert int(last["draws_total"]) == draws == len(baseline.tables["s3"])  # one uniform per component


def test_realism_gates_observe_versus_block():
    """The authored baseline misses hard realism gates: observe reports them, block makes them structural."""
    from engine.policies import PolicySet
    from engine.policies.authoring import author_policies

    authored = PolicySet(author_policies(default_world().population), "authored")
    observe = run_chain(authored, 42)
    assert observe.s6_report["overall_status"] == "PASS" and observe.s7["status"] == "PASS"
    assert observe.s6_report["realism"]["verdict"] == "FAIL_REALISM" and observe.s6_report["realism"]["hard_failed"]
    block = run_chain(authored, 42, realism_mode="block")
    assert block.s6_report["overall_status"] == "FAIL"
    assert block.s7["status"] == "FAIL" and block.flag == "" and block.s7["error_code"] == "E3A_S7_001_S6_NOT_PASS"


def test_default_world_chain_carries_fidelity(baseline):
    """Every chain on the default world measures fidelity: the pack, the gates and the S6 realism block."""
    from engine.metrics import FIDELITY_GATES, fidelity_verdict

    assert baseline.pack["fidelity"]["applicable"] is True
    assert baseline.pack["fidelity"]["alias_count"] == 0                 # the population-true universe
    assert baseline.pack["fidelity"]["outside_universe_share"] == 0.0    # no populated clock left out
    assert list(baseline.gates["fidelity"]) == [g.gate_id for g in FIDELITY_GATES]
    assert {g["status"] for g in baseline.gates["fidelity"].values()} <= {"PASS", "FAIL"}
    verdict = baseline.s6_report["realism"]["fidelity_verdict"]
    assert verdict == fidelity_verdict(baseline.gates) and verdict in {"FAITHFUL", "DISTORTED"}


def test_a_pack_with_cached_sections_equals_the_pack_measured_whole(policies, cache):
    # S1-S3's sections are states of their own, kept while their table is: after an S4-only change (S1-S3 sections
    # reused) and an S3-only change (S1, S2 reused), the pack equals metric_pack of the same tables measured whole
    from engine.metrics import metric_pack

    world = default_world()
    run_chain(policies, 7, cache=cache)
    mix = yaml.safe_load(policies.raw["zone_mixture_policy"])
    s4 = dict(mix, s4_safeguards=dict(mix["s4_safeguards"], enabled=not mix["s4_safeguards"].get("enabled", False)))
    s3 = dict(mix, s3_dispersion=dict(mix["s3_dispersion"], enabled=True, concentration_scale=0.5))
    # (the fidelity section's S2 part, metrics.prior, kept in both)
    for doc, kept in ((s4, {"metrics.s1", "metrics.s2", "metrics.s3", "metrics.prior"}),
                      (s3, {"metrics.s1", "metrics.s2", "metrics.prior"})):
        res = run_chain(policies.replace(zone_mixture_policy=dump_yaml(doc)), 7, cache=cache)
        assert kept <= res.reused and not ({"metrics.s1", "metrics.s2", "metrics.s3"} - kept) & res.reused
        assert res.pack == metric_pack(res.cores, world.evidence)
        res.pack["s1"]["pairs_total"] = -1   # a run's pack is its own: editing it leaves the cached section alone
        assert run_chain(policies.replace(zone_mixture_policy=dump_yaml(doc)), 7, cache=cache).pack["s1"]["pairs_total"] > 0


def test_run_chain_tells_each_state_as_it_ends_and_the_cli_can_hide_its_bar(policies, tmp_path):
    """The progress of ``engine run``: ``on_state`` hears every state of the table once, in its order; the
    bar is drawn on a terminal only, and ``--no-progress`` is accepted (the output is the same)."""
    import subprocess
    import sys

    from engine import run_chain
    from engine.chain.steps import STATE_TABLE

    heard: list[str] = []
    run_chain(policies, 42, on_state=heard.append)
    assert heard == [s.name for s in STATE_TABLE]
    out = subprocess.run([sys.executable, "-m", "engine", "run", "--seed", "42", "--run-root", str(tmp_path),
                          "--no-progress"], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0 and out.stderr == "" and out.stdout.startswith("run_id "), out.stderr
