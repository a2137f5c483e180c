"""Cross-seed CV (§10) and every seedpack verdict branch (§9 with our Resolution)."""

from __future__ import annotations

import copy
import math

import pytest

from engine.metrics import cv, evaluate_gates, seedpack_verdict
from .test_gates_verdicts import bplus_pack

SEEDS = (42, 7, 101, 202)


def entry(pack=None, s6="PASS", s7="PASS", with_gates=True):
    pack = pack or bplus_pack()
    out = {"pack": pack, "s6_overall_status": s6, "s7_status": s7}
    if with_gates:
        out["gates"] = evaluate_gates(pack)
    return out


def good_seedpack():
    return {s: entry(copy.deepcopy(bplus_pack())) for s in SEEDS}


def test_cv_rules():
    # [1, 3]: mean 2, population std sqrt(((1-2)^2 + (3-2)^2)/2) = 1 -> CV 0.5 (sample std would give 0.707)
    assert cv([1.0, 3.0]) == pytest.approx(0.5, rel=1e-15)
    # [2, 4, 4, 4, 5, 5, 7, 9]: mean 5, pstdev 2 -> 0.4
    assert cv([2, 4, 4, 4, 5, 5, 7, 9]) == pytest.approx(0.4, rel=1e-15)
    assert cv([0.7, 0.7, 0.7, 0.7]) == 0.0
    assert cv([]) == 0.0 and cv([5.0]) == 0.0          # fewer than 2 values -> 0
    assert cv([0.0, 0.0, 1e-13]) == 0.0                # |mean| <= 1e-12 and all ~0 -> 0
    assert cv([1.0, -1.0]) == math.inf                 # mean 0, values not ~0 -> +inf


def test_pass_bplus():
    res = seedpack_verdict(good_seedpack())
    assert res["verdict"] == "PASS_BPLUS"
    assert set(res["cv"]) == {"s2.top1_share_median_multi_tz", "s3.merchant_share_std_median",
                              "s4.top1_share_median", "s4.escalated_multi_zone_rate"}
    assert all(v == 0.0 for v in res["cv"].values())
    assert res["gate_matrix"]["hard"]["3A-V01_s2_top1_median_multi_tz"] == {s: "PASS" for s in SEEDS}
    assert res["stability"]["3A-X02_escalation_rate_corridor"]["status"] == "PASS"  # 0.6 in [0.55, 0.70]


def test_missing_seed_is_invalid_first():
    per_seed = good_seedpack()
    del per_seed[202]
    per_seed[7]["pack"]["s3"]["merchant_share_std_median"] = 0.0  # a hard fail too: INVALID still wins
    per_seed[7]["gates"] = evaluate_gates(per_seed[7]["pack"])
    res = seedpack_verdict(per_seed)
    assert res["verdict"] == "INVALID_FOR_GRADING"
    assert res["seeds"][202]["status"] == "MISSING"


@pytest.mark.parametrize("field", ["pack", "s6_overall_status", "s7_status"])
def test_missing_artifact_is_invalid(field):
    per_seed = good_seedpack()
    per_seed[101][field] = None
    assert seedpack_verdict(per_seed)["verdict"] == "INVALID_FOR_GRADING"
    per_seed[101] = None
    assert seedpack_verdict(per_seed)["verdict"] == "INVALID_FOR_GRADING"


def test_hard_fail_on_one_seed_is_fail_realism():
    per_seed = good_seedpack()
    per_seed[101] = entry(dict(bplus_pack(), s4=dict(bplus_pack()["s4"], top1_share_p75=0.99)))
    res = seedpack_verdict(per_seed)
    assert res["verdict"] == "FAIL_REALISM"
    assert res["stability"]["3A-X03_no_hard_failure_any_seed"]["status"] == "FAIL"
    assert res["gate_matrix"]["hard"]["3A-V06_s4_top1_share_p75"][101] == "FAIL"


@pytest.mark.parametrize("s6,s7", [("FAIL", "PASS"), ("PASS", "FAIL")])
def test_structural_fail_is_fail_realism(s6, s7):
    per_seed = good_seedpack()
    per_seed[42] = entry(s6=s6, s7=s7)
    assert seedpack_verdict(per_seed)["verdict"] == "FAIL_REALISM"


def _set_s3_std(per_seed, values):
    for s, v in zip(SEEDS, values):
        per_seed[s]["pack"]["s3"]["merchant_share_std_median"] = v
        per_seed[s]["gates"] = evaluate_gates(per_seed[s]["pack"])


def test_bplus_cv_breach_caps_at_pass_b():
    per_seed = good_seedpack()
    # all >= 0.04 (stretch passes on every seed); [0.05,0.06,0.07,0.08]: mean .065,
    # pstdev sqrt((.015^2+.005^2+.005^2+.015^2)/4) = sqrt(.000125) = .01118 -> CV .1720 in (0.15, 0.25]
    _set_s3_std(per_seed, [0.05, 0.06, 0.07, 0.08])
    res = seedpack_verdict(per_seed)
    assert res["cv"]["s3.merchant_share_std_median"] == pytest.approx(math.sqrt(0.000125) / 0.065, rel=1e-9)
    assert res["stability"]["3A-X01_cv_primary_medians"]["BPLUS"]["status"] == "FAIL"
    assert res["stability"]["3A-X01_cv_primary_medians"]["B"]["status"] == "PASS"
    assert res["verdict"] == "PASS_B"


def test_b_cv_breach_is_fail_realism():
    per_seed = good_seedpack()
    # [0.04, 0.04, 0.04, 0.12]: mean .06, pstdev sqrt((3*.02^2 + .06^2)/4) = sqrt(.0012) = .03464 -> CV .577
    _set_s3_std(per_seed, [0.04, 0.04, 0.04, 0.12])
    res = seedpack_verdict(per_seed)
    assert all(row["hard_pass"] and row["stretch_pass"] for row in res["seeds"].values())
    assert res["cv"]["s3.merchant_share_std_median"] == pytest.approx(math.sqrt(0.0012) / 0.06, rel=1e-9)
    assert res["verdict"] == "FAIL_REALISM"


def test_stretch_miss_on_one_seed_is_pass_b_and_x02_is_report_only():
    per_seed = good_seedpack()
    per_seed[7]["pack"]["zone_alloc"]["top1_share_median"] = 0.88  # S06 fails, V07 (<= .90) passes
    per_seed[7]["pack"]["s1"]["escalation_rate"] = 0.9             # outside the X02 corridor
    per_seed[7]["gates"] = None                                    # derived from the pack when absent
    res = seedpack_verdict(per_seed)
    assert res["verdict"] == "PASS_B"
    assert res["stability"]["3A-X02_escalation_rate_corridor"]["status"] == "FAIL"
    assert res["stability"]["3A-X02_escalation_rate_corridor"]["verdict_bearing"] is False
    assert res["gate_matrix"]["stretch"]["3A-S06_zone_alloc_top1_share_median"][7] == "FAIL"
