"""Gate table (METRICS §8) and the single-run verdict with our Resolution (§9)."""

from __future__ import annotations

import copy

import pytest

from engine.metrics import GATES, evaluate_gates, metric_pack, run_verdict, thresholds
from engine.metrics.gates import gate_passes

HARD_IDS = ["3A-V01_s2_top1_median_multi_tz", "3A-V02_s2_share_top1_ge_099_multi_tz",
            "3A-V03_s4_escalated_multi_zone_rate", "3A-V04_s3_merchant_share_std_median",
            "3A-V05_s4_top1_share_median", "3A-V06_s4_top1_share_p75", "3A-V07_zone_alloc_top1_share_median",
            "3A-V08_s4_share_pairs_zones_ge_005_ge_2", "3A-VXX_s4_count_conservation",
            "3A-VXY_zone_alloc_count_conservation"]
STRETCH_IDS = ["3A-S01_s2_top1_median_multi_tz", "3A-S02_s2_share_top1_ge_099_multi_tz",
               "3A-S03_s4_escalated_multi_zone_rate", "3A-S04_s3_merchant_share_std_median",
               "3A-S05_s4_top1_share_median", "3A-S06_zone_alloc_top1_share_median",
               "3A-S07_s1_escalation_curve_no_major_dips"]


def bplus_pack() -> dict:
    """A pack that passes every hard and every stretch gate."""
    return {
        "s1": {"zone_count_curve_major_dip_max_abs": 0.05, "escalation_rate": 0.6},
        "s2": {"top1_share_median_multi_tz": 0.70, "share_top1_ge_099_multi_tz": 0.05},
        "s3": {"merchant_share_std_median": 0.05},
        "s4": {"escalated_multi_zone_rate": 0.60, "top1_share_median": 0.80, "top1_share_p75": 0.90,
               "share_pairs_zones_ge_005_ge_2": 0.50, "count_conservation_all_pairs": True},
        "zone_alloc": {"top1_share_median": 0.80, "count_conservation_all_pairs": True},
    }


def test_gate_ids_and_thresholds_are_the_spec_table():
    assert [g.gate_id for g in GATES if g.family == "hard"] == HARD_IDS
    assert [g.gate_id for g in GATES if g.family == "stretch"] == STRETCH_IDS
    t = thresholds()
    assert t["hard_B"]["s2_top1_median_multi_tz_max"] == 0.85
    assert t["hard_B"]["s4_share_pairs_zones_ge_005_ge_2_min"] == 0.20
    assert t["stretch_BPLUS"]["s1_escalation_curve_major_dip_max_abs"] == 0.10
    assert t["stretch_BPLUS"]["s3_merchant_share_std_median_min"] == 0.04
    assert len(t["hard_B"]) == 10 and len(t["stretch_BPLUS"]) == 7


def test_evaluate_gates_shape():
    gates = evaluate_gates(bplus_pack())
    entry = gates["hard"]["3A-V01_s2_top1_median_multi_tz"]
    assert entry == {"metric": "s2.top1_share_median_multi_tz", "value": 0.70, "threshold": 0.85, "op": "<=",
                     "status": "PASS"}
    assert gates["stretch"]["3A-S07_s1_escalation_curve_no_major_dips"]["metric"] == \
        "s1.zone_count_curve_major_dip_max_abs"


@pytest.mark.parametrize("op,value,threshold,ok", [
    ("<=", 0.85, 0.85, True), ("<=", 0.8500000001, 0.85, False),   # ceilings inclusive, unrounded
    (">=", 0.35, 0.35, True), (">=", 0.3499999999, 0.35, False),   # floors inclusive
    ("<=", None, 0.85, False), ("<=", float("nan"), 0.85, False),   # missing / NaN fail closed
    ("==", True, True, True), ("==", False, True, False), ("==", 1, True, False), ("==", None, True, False),
])
def test_gate_comparison(op, value, threshold, ok):
    assert gate_passes(op, value, threshold) is ok


def test_verdict_bplus_b_fail():
    pack = bplus_pack()
    assert run_verdict(evaluate_gates(pack)) == "PASS_BPLUS"
    # fails a stretch gate only -> PASS_B
    pack["s3"]["merchant_share_std_median"] = 0.03
    assert run_verdict(evaluate_gates(pack)) == "PASS_B"
    # fails a hard gate -> FAIL_REALISM
    pack["s3"]["merchant_share_std_median"] = 0.019
    assert run_verdict(evaluate_gates(pack)) == "FAIL_REALISM"


@pytest.mark.parametrize("mutate", [
    lambda p: p["s4"].__setitem__("top1_share_p75", 0.98),                        # V06 (no stretch twin)
    lambda p: p["s4"].__setitem__("count_conservation_all_pairs", False),         # VXX rail
    lambda p: p["zone_alloc"].__setitem__("count_conservation_all_pairs", False),  # VXY rail
    lambda p: p["s4"].__setitem__("share_pairs_zones_ge_005_ge_2", 0.19),          # V08 (no stretch twin)
])
def test_all_stretch_pass_but_one_hard_fail_is_not_bplus(mutate):
    """The reference's quirk labelled these PASS_BPLUS; our Resolution requires hard AND stretch."""
    pack = copy.deepcopy(bplus_pack())
    mutate(pack)
    gates = evaluate_gates(pack)
    assert all(g["status"] == "PASS" for g in gates["stretch"].values())
    assert run_verdict(gates) == "FAIL_REALISM"


def test_missing_metric_fails_gate():
    pack = bplus_pack()
    del pack["s3"]["merchant_share_std_median"]
    gates = evaluate_gates(pack)
    assert gates["hard"]["3A-V04_s3_merchant_share_std_median"]["status"] == "FAIL"
    assert gates["hard"]["3A-V04_s3_merchant_share_std_median"]["value"] is None
    assert run_verdict(gates) == "FAIL_REALISM"


def test_golden_gates(golden):
    gates = evaluate_gates(metric_pack(golden))
    hard = {k: v["status"] for k, v in gates["hard"].items()}
    # golden: S2 median 0.6 <= .85 PASS; share>=.99 1/3 > .20 FAIL; S4 multi .75 PASS; S3 std .106 PASS;
    # S4 median .935 > .90 FAIL; p75 .95 PASS; zone_alloc .835 PASS; V08 .5 PASS; VXX False FAIL; VXY PASS
    assert hard == {
        "3A-V01_s2_top1_median_multi_tz": "PASS", "3A-V02_s2_share_top1_ge_099_multi_tz": "FAIL",
        "3A-V03_s4_escalated_multi_zone_rate": "PASS", "3A-V04_s3_merchant_share_std_median": "PASS",
        "3A-V05_s4_top1_share_median": "FAIL", "3A-V06_s4_top1_share_p75": "PASS",
        "3A-V07_zone_alloc_top1_share_median": "PASS", "3A-V08_s4_share_pairs_zones_ge_005_ge_2": "PASS",
        "3A-VXX_s4_count_conservation": "FAIL", "3A-VXY_zone_alloc_count_conservation": "PASS"}
    assert run_verdict(gates) == "FAIL_REALISM"
