"""P0 comparator (§11), POPT.0 table/statuses/hotspots (§13) and POPT.1 closure (§14)."""

from __future__ import annotations

import copy

import pytest

from engine.metrics import compare_packs, evaluate_gates, popt0_table, popt1_closure, run_verdict
from engine.metrics.runtime import hms
from .test_gates_verdicts import bplus_pack


def fail_pack() -> dict:
    """The P0-like baseline: concentrated priors, collapsed S4."""
    pack = copy.deepcopy(bplus_pack())
    pack["s2"].update(top1_share_median_multi_tz=0.991523, share_top1_ge_099_multi_tz=0.525424)
    pack["s3"]["merchant_share_std_median"] = 0.002972
    pack["s4"].update(escalated_multi_zone_rate=0.133251, top1_share_median=1.0, top1_share_p75=1.0)
    pack["zone_alloc"]["top1_share_median"] = 1.0
    return pack


# ----------------------------------------------------------------------------- comparator

def test_compare_improving_candidate():
    base, cand = {"pack": fail_pack()}, {"pack": bplus_pack()}
    out = compare_packs(base, cand)
    d = out["delta_candidate_minus_baseline"]
    assert d["s2_top1_share_median_multi_tz"] == pytest.approx(0.70 - 0.991523)
    assert d["s4_escalated_multi_zone_rate"] == pytest.approx(0.60 - 0.133251)
    assert d["s3_merchant_share_std_median"] == pytest.approx(0.05 - 0.002972)
    assert set(d) == {"s2_top1_share_median_multi_tz", "s2_share_top1_ge_099_multi_tz",
                      "s3_merchant_share_std_median", "s4_escalated_multi_zone_rate", "s4_top1_share_median",
                      "s4_top1_share_p75", "zone_alloc_top1_share_median"}
    assert out["uplift_directional"] == {
        "s2_top1_share_median_multi_tz_down": True, "s2_share_top1_ge_099_multi_tz_down": True,
        "s3_merchant_share_std_median_up": True, "s4_escalated_multi_zone_rate_up": True,
        "s4_top1_share_median_down": True, "s4_top1_share_p75_down": True, "zone_alloc_top1_share_median_down": True}
    assert out["gate_drift"]["hard"]["3A-V01_s2_top1_median_multi_tz"] == "IMPROVED"
    assert out["gate_drift"]["hard"]["3A-VXX_s4_count_conservation"] == "UNCHANGED"
    assert out["progression_decision"] == "CANDIDATE_MEETS_GATE"


def test_compare_regressing_candidate_and_strict_uplift():
    base = {"pack": bplus_pack()}
    cand_pack = copy.deepcopy(bplus_pack())
    cand_pack["s4"]["count_conservation_all_pairs"] = False
    gates = evaluate_gates(cand_pack)
    out = compare_packs(base, {"pack": cand_pack, "gates": gates, "verdict": run_verdict(gates)})
    assert out["gate_drift"]["hard"]["3A-VXX_s4_count_conservation"] == "REGRESSED"
    assert out["progression_decision"] == "HOLD_REMEDIATE"
    # equal metrics: delta 0 -> no uplift in either direction (strict)
    assert out["delta_candidate_minus_baseline"]["s4_top1_share_median"] == 0.0
    assert out["uplift_directional"]["s4_top1_share_median_down"] is False
    assert out["uplift_directional"]["s4_escalated_multi_zone_rate_up"] is False


def test_gate_drift_uses_baseline_ids_and_status_only():
    base = {"pack": {}, "gates": {"hard": {"G1": {"status": "FAIL"}, "G2": {"status": "PASS"}}},
            "verdict": "FAIL_REALISM"}
    cand = {"pack": {}, "gates": {"hard": {"G1": {"status": "PASS"}}}, "verdict": "PASS_B"}
    out = compare_packs(base, cand)
    assert out["gate_drift"] == {"hard": {"G1": "IMPROVED", "G2": "REGRESSED"}}  # absent in candidate -> FAIL
    assert out["delta_candidate_minus_baseline"]["s4_top1_share_median"] is None


# ----------------------------------------------------------------------------- POPT.0

PLAN_SECONDS = {"S0": 1.32, "S1": 3.69, "S2": 4.80, "S3": 6.36, "S4": 8.07, "S5": 12.50, "S6": 17.94, "S7": 13.15}


def test_popt0_plan_snapshot():
    out = popt0_table(PLAN_SECONDS)
    rows = {r["state"]: r for r in out["timing"]["state_table"]}
    total = sum(PLAN_SECONDS.values())  # 67.83
    assert out["timing"]["segment_elapsed_s"] == pytest.approx(total)
    assert rows["S6"]["segment_share"] == pytest.approx(17.94 / total)  # 0.2645 -> the plan's 26.45 %
    assert rows["S6"]["elapsed_hms"] == "00:00:18"
    assert rows["S5"]["elapsed_hms"] == "00:00:12"   # round(12.5) = 12, as the plan's table shows
    # statuses: S6 17.94 > 14 RED; S7 13.15 > 12 RED; S5 12.5 > 12 RED; S4 8.07 in (6, 9] AMBER;
    # S3 6.36 in (5, 7.5] AMBER; S2 4.8 AMBER; S1 3.69 AMBER; S0 1.32 <= 1.5 GREEN
    assert {s: r["status"] for s, r in rows.items()} == {
        "S0": "GREEN", "S1": "AMBER", "S2": "AMBER", "S3": "AMBER", "S4": "AMBER", "S5": "RED", "S6": "RED",
        "S7": "RED"}
    assert [(h["rank"], h["role"], h["state"]) for h in out["hotspots"]] == [
        (1, "primary", "S6"), (2, "secondary", "S7"), (3, "closure", "S5")]
    assert out["hotspots"][0]["budget"] == {"target_s": 10.0, "target_hms": "00:00:10", "stretch_s": 14.0,
                                            "stretch_hms": "00:00:14", "status": "RED"}
    assert out["progression_gate"] == {"decision": "GO", "primary_status": "RED", "next_state_for_popt1": "S6"}
    assert out["budgets"]["S3"] == {"target_s": 5.0, "stretch_s": 7.5}


def test_popt0_boundaries_missing_and_hold():
    seconds = {"S0": 1.5, "S1": 4.5, "S2": None, "S3": -1.0, "S4": 0.1, "S5": 0.1, "S6": 0.2, "S7": 0.1}
    out = popt0_table(seconds, evidence={"S1": {"pairs": 7}})
    rows = {r["state"]: r for r in out["timing"]["state_table"]}
    assert rows["S0"]["status"] == "GREEN"            # == target is GREEN (inclusive)
    assert rows["S1"]["status"] == "AMBER"            # == stretch is AMBER (inclusive)
    assert rows["S2"]["status"] == "MISSING" and rows["S2"]["elapsed_s"] is None
    assert rows["S3"]["status"] == "MISSING"          # negative elapsed is null
    assert rows["S2"]["segment_share"] == 0.0
    assert out["hotspots"][0]["state"] == "S1" and out["hotspots"][0]["evidence"] == {"pairs": 7}
    assert out["progression_gate"]["decision"] == "GO"   # primary AMBER -> GO
    calm = popt0_table({s: 0.01 for s in PLAN_SECONDS})
    assert calm["progression_gate"]["decision"] == "HOLD"
    assert calm["hotspots"][0]["state"] == "S0"           # ties keep state order
    assert popt0_table({})["progression_gate"] == {"decision": "HOLD", "primary_status": "MISSING",
                                                  "next_state_for_popt1": None}
    assert hms(3725.4) == "01:02:05"


# ----------------------------------------------------------------------------- POPT.1

GOOD_EVIDENCE = {"s6_status": "PASS", "s6_overall_status": "PASS", "s6_issues_error": 0, "s7_status": "PASS",
                 "s7_passed_flag_present": True, "s5_pairs_count_conservation_violations": 0,
                 "identity_match": True}


def test_popt1_plan_closure_unlocks():
    cand = dict(PLAN_SECONDS, S5=4.60, S6=2.93, S7=2.25)
    out = popt1_closure(PLAN_SECONDS, cand, GOOD_EVIDENCE)
    assert out["runtime"]["s6"]["improvement_fraction"] == pytest.approx((17.94 - 2.93) / 17.94)  # 83.66 %
    assert out["runtime"]["s5"]["improvement_fraction"] == pytest.approx((12.50 - 4.60) / 12.50)  # 63.2 %
    assert out["gates"]["s5_gate_required"] is True      # baseline S5 12.5 > 12.0
    assert out["decision"]["progression_decision"] == "UNLOCK_P0"
    assert out["decision"]["all_veto_clear"] and out["decision"]["all_runtime_gates_clear"]


def test_popt1_runtime_gate_rules():
    # S6 still above 14 s but improved >= 15 %: 20 -> 16.9 is 15.5 % -> PASS; 20 -> 17.5 is 12.5 % -> FAIL
    base = {"S5": 5.0, "S6": 20.0, "S7": 5.0}
    assert popt1_closure(base, {"S5": 5.0, "S6": 16.9, "S7": 5.0}, GOOD_EVIDENCE)["gates"]["s6"]["status"] == "PASS"
    out = popt1_closure(base, {"S5": 50.0, "S6": 17.5, "S7": 5.0}, GOOD_EVIDENCE)
    assert out["gates"]["s6"]["status"] == "FAIL"
    assert out["gates"]["s5"] == {"rule": "candidate_s <= 12.0 or improvement_fraction >= 0.08",
                                  "required": False, "status": "FAIL"}  # S5 not required: baseline 5 <= 12
    assert out["decision"]["progression_decision"] == "HOLD_POPT1_REOPEN"
    assert out["decision"]["reason"] == "runtime gate s6 failed"
    forced = popt1_closure(base, {"S5": 50.0, "S6": 1.0, "S7": 1.0}, GOOD_EVIDENCE, require_s5_gate=True)
    assert forced["decision"]["progression_decision"] == "HOLD_POPT1_REOPEN"
    assert popt1_closure({"S6": 0.0}, {"S6": 1.0}, GOOD_EVIDENCE)["runtime"]["s6"]["improvement_fraction"] == 0.0


@pytest.mark.parametrize("key", sorted(GOOD_EVIDENCE))
def test_popt1_vetoes_fail_closed_on_missing_evidence(key):
    ev = {k: v for k, v in GOOD_EVIDENCE.items() if k != key}
    out = popt1_closure(PLAN_SECONDS, dict(PLAN_SECONDS, S5=1.0, S6=1.0, S7=1.0), ev)
    assert out["decision"]["all_veto_clear"] is False
    assert out["decision"]["progression_decision"] == "HOLD_POPT1_REOPEN"


def test_popt1_identity_from_reports():
    ident = {"manifest_fingerprint": "a" * 64, "parameter_hash": "b" * 64}
    ev = {k: v for k, v in GOOD_EVIDENCE.items() if k != "identity_match"}
    ok = dict(ev, identity=ident, report_identities={"S5": ident, "S6": ident, "S7": ident})
    assert popt1_closure({}, {}, ok)["veto"]["identity_match"] is True
    bad = dict(ok, report_identities={"S5": ident, "S6": dict(ident, parameter_hash="c" * 64), "S7": ident})
    assert popt1_closure({}, {}, bad)["veto"]["identity_match"] is False
    assert popt1_closure({}, {}, dict(ev, s6_issues_error=2))["veto"]["s6_issues_error_zero"] is False


def test_popt0_gate_is_said_in_words():
    """``tuning.runtime baseline`` prints what the gate means: HOLD with every state GREEN is not a stop."""
    from tuning.runtime.lanes import gate_sentence

    calm = popt0_table({s: 0.01 for s in PLAN_SECONDS})
    said = gate_sentence(calm["progression_gate"], calm["timing"]["state_table"])
    assert said.startswith("**HOLD**: no runtime work needed") and "as is every state" in said and "P0" in said
    slow_s0 = popt0_table({**{s: 0.01 for s in PLAN_SECONDS}, "S0": 2.0, "S6": 9.0})  # S6 primary, GREEN
    said = gate_sentence(slow_s0["progression_gate"], slow_s0["timing"]["state_table"])
    assert "primary hotspot S6 is GREEN" in said and "over their own target: S0" in said
    hot = popt0_table(PLAN_SECONDS)
    assert gate_sentence(hot["progression_gate"], hot["timing"]["state_table"]).startswith(
        "**GO**: the primary hotspot S6 is RED")
    assert gate_sentence(popt0_table({})["progression_gate"], []) == "**HOLD**: no state was timed"


def test_every_popt0_repeat_times_the_publishing_states(tmp_path):
    """The report's per-state figure is the median of repeats that all ran S5-S7: a repeat on the scoring path
    (no run root) would add S5 = S7 = 0.0 and a lighter S6, and two such repeats of three made the median of S5
    and S7 zero. The first repeat's run is the one the report names; the others leave nothing behind."""
    from pathlib import Path

    from engine import PolicySet, default_world
    from tuning.runtime.lanes import measure, popt0_document

    runs, shipped = tmp_path / "runs", Path(__file__).resolve().parents[2] / "policies"
    res, samples, windows = measure(PolicySet.from_dir(shipped), default_world(), 42, 3, runs)
    assert len(samples) == len(windows) == 3
    assert all(row[s] > 0 for row in samples for s in ("S5", "S6", "S7")), samples
    assert [p.name for p in runs.iterdir()] == [res.run_dir.name]   # the first repeat's run, alone
    doc = popt0_document(res, samples, windows, runs)
    table = {r["state"]: r["elapsed_s"] for r in doc["timing"]["state_table"]}
    for state in ("S5", "S6", "S7"):
        assert table[state] == sorted(row[state] for row in samples)[1] > 0


def test_every_hotspot_code_reference_is_a_file_of_the_repository():
    """The POPT.0 hotspot map names the files a state's time goes to; a name left behind by a move sends a reader
    nowhere (helper 55: engine/hashing.py, states/s5_zone_alloc.py, s6_validate.py)."""
    from pathlib import Path

    from engine.metrics.runtime import CODE_REFS

    root = Path(__file__).resolve().parents[2]
    missing = sorted(ref for refs in CODE_REFS.values() for ref in refs if not (root / ref).is_file())
    assert missing == []
