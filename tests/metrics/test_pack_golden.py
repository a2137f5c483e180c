"""Golden metric pack: every expected value below is worked out by hand from conftest.golden_tables().

Pairs (merchant, country): S1 has 7 -- (1,AA) site 25 zc3 ESC, (1,BB) 20 zc2 ESC, (2,AA) 4 zc3 ESC,
(2,CC) 5 zc1, (3,AA) 1 zc3, (3,DD) 3 zc2 ESC, (4,DD) 2 zc2.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from engine.core.errors import EngineError
from engine.metrics import metric_pack
from engine.metrics.pack import count_surface_pairs, zone_count_curve_shape

R2 = math.sqrt(2.0)


@pytest.fixture
def pack(golden):
    return metric_pack(golden)


def test_s1_golden(pack):
    s1 = pack["s1"]
    assert (s1["pairs_total"], s1["pairs_escalated"], s1["pairs_monolithic"]) == (7, 4, 3)
    assert s1["escalation_rate"] == pytest.approx(4 / 7, rel=1e-15)
    # below_min_sites: (3,AA),(4,DD); default_escalation: (1,AA),(2,AA),(3,DD)
    assert s1["decision_reason_counts"] == {"below_min_sites": 2, "default_escalation": 3,
                                            "forced_escalation": 1, "forced_monolithic": 1}
    # zc1: (2,CC) 0/1; zc2: (1,BB)E,(3,DD)E,(4,DD) 2/3; zc3: (1,AA)E,(2,AA)E,(3,AA) 2/3
    curve = {b["zone_count_country"]: (b["pairs"], b["pairs_escalated"]) for b in s1["zone_count_curve"]}
    assert curve == {1: (1, 0), 2: (3, 2), 3: (3, 2)}
    assert [b["escalation_rate"] for b in s1["zone_count_curve"]] == [0.0, 2 / 3, 2 / 3]
    # no bucket reaches 25 pairs -> nothing supported, no violation, dip 0.0
    assert s1["zone_count_curve_supported_buckets"] == 0
    assert s1["zone_count_curve_monotonic_violations"] == 0
    assert s1["zone_count_curve_major_dip_max_abs"] == 0.0
    assert s1["zone_count_curve_major_dip_count_gt_010"] == 0
    # site buckets: 1-2 {(3,AA)1,(4,DD)2} 0/2; 3-4 {(2,AA)4,(3,DD)3} 2/2; 5-9 {(2,CC)5} 0/1;
    # 10-19 none; 20-34 {(1,AA)25,(1,BB)20} 2/2; 35-99 none; 100+ none
    got = [(b["bucket"], b["pairs"], b["pairs_escalated"], b["escalation_rate"]) for b in s1["site_count_curve"]]
    assert got == [("1-2", 2, 0, 0.0), ("3-4", 2, 2, 1.0), ("5-9", 1, 0, 0.0), ("10-19", 0, 0, 0.0),
                   ("20-34", 2, 2, 1.0), ("35-99", 0, 0, 0.0), ("100+", 0, 0, 0.0)]


def test_s2_golden(pack):
    s2 = pack["s2"]
    # tz_count: AA 3, BB 2, CC 1, DD 2 -> sorted [1,2,2,3]: median (2+2)/2 = 2; p90 i=floor(3*0.9+0.5)=3 -> 3
    assert (s2["countries_total"], s2["countries_multi_tz_total"]) == (4, 3)
    assert s2["tz_count_median"] == 2.0
    assert s2["tz_count_p90"] == 3.0
    # multi-TZ top1: AA 0.6, BB 0.995, DD 0.5 -> sorted [0.5,0.6,0.995]; median 0.6; p75 i=floor(2*.75+.5)=2
    assert s2["top1_share_median_multi_tz"] == 0.6
    assert s2["top1_share_p75_multi_tz"] == 0.995
    # only BB has top1 >= 0.99 -> 1/3
    assert s2["share_top1_ge_099_multi_tz"] == pytest.approx(1 / 3, rel=1e-15)
    # hhi: AA .36+.09+.01=.46, BB .990025+.000025=.99005, DD .25+.25=.5 -> median .5
    assert s2["hhi_median_multi_tz"] == pytest.approx(0.5, rel=1e-15)
    # 8 rows: floor on A/3 and B/2 -> 2/8; bump on B/2 -> 1/8
    assert s2["floor_applied_rate"] == 0.25
    assert s2["bump_applied_rate"] == 0.125


def test_s3_golden(pack):
    s3 = pack["s3"]
    # per pair top1 / zones>=0.05: (1,AA) .5/3, (1,BB) .96/1, (2,AA) .7/3 (0.05 inclusive), (3,DD) .55/2
    assert s3["pairs_total"] == 4
    # sorted top1 [.5,.55,.7,.96]: median (.55+.7)/2 = .625; p90 i=floor(3*.9+.5)=3 -> .96
    assert s3["top1_share_median"] == pytest.approx(0.625, rel=1e-15)
    assert s3["top1_share_p90"] == 0.96
    # zones>=0.05 [3,1,3,2]: >=2 in 3 of 4; median of sorted [1,2,3,3] = (2+3)/2 = 2.5
    assert s3["share_pairs_zones_ge_005_ge_2"] == 0.75
    assert s3["zones_ge_005_p50"] == 2.5
    # cells with >1 merchant: (AA,A/1) [.5,.7], (AA,A/2) [.3,.25], (AA,A/3) [.2,.05]; BB, DD cells have 1 merchant.
    # two values a,b: sample std = |a-b|/sqrt(2) -> [.2, .05, .15]/sqrt2; sorted [.05,.15,.2]/sqrt2
    assert s3["merchant_share_std_groups"] == 3
    assert s3["merchant_share_std_median"] == pytest.approx(0.15 / R2, rel=1e-12)
    # p90: n=3, i=floor(2*0.9+0.5)=2 -> .2/sqrt2
    assert s3["merchant_share_std_p90"] == pytest.approx(0.2 / R2, rel=1e-12)


def test_s4_golden(pack):
    s4 = pack["s4"]
    # S4 pairs: (1,AA) [23,1,1]; (1,BB) [19,1]; (2,AA) [4,0,0]; (3,AA) [1,0,0] reported 2 (NOT escalated,
    # NOT conserved); (3,DD) [2,1]
    assert s4["pairs_total"] == 5
    assert s4["pairs_escalated_total"] == 4
    # escalated nonzero zones: (1,AA) 3, (1,BB) 2, (2,AA) 1, (3,DD) 2 -> >1 in 3/4, ==1 in 1/4
    assert s4["escalated_multi_zone_rate"] == 0.75
    assert s4["share_pairs_single_zone"] == 0.25
    # zones >= 5% of counts: (1,AA) 23/25 yes, 1/25=.04 no x2 -> 1; (1,BB) 19/20, 1/20=.05 (inclusive) -> 2;
    # (2,AA) -> 1; (3,DD) 2/3, 1/3 -> 2  => >=2 in 2 of 4
    assert s4["share_pairs_zones_ge_005_ge_2"] == 0.5
    # top1: .92, .95, 1.0, 2/3 -> sorted [2/3,.92,.95,1.0]: median (.92+.95)/2 = .935; p75 i=floor(3*.75+.5)=2 -> .95
    assert s4["top1_share_median"] == pytest.approx(0.935, rel=1e-15)
    assert s4["top1_share_p75"] == 0.95
    # conservation is over ALL S4 pairs: (3,AA) sums 1 but reports 2
    assert s4["count_conservation_all_pairs"] is False
    assert s4["count_conservation_violations"] == 1


def test_zone_alloc_golden(pack):
    za = pack["zone_alloc"]
    # pairs: (1,AA) [23,1,1] .92; (1,BB) [19,1] .95; (2,AA) [3,1,0] .75; (3,DD) [1,2] 2/3
    assert za["pairs_total"] == 4
    # sorted [2/3,.75,.92,.95]: median (.75+.92)/2 = .835; p75 i=2 -> .92
    assert za["top1_share_median"] == pytest.approx(0.835, rel=1e-15)
    assert za["top1_share_p75"] == 0.92
    assert za["count_conservation_all_pairs"] is True
    assert za["count_conservation_violations"] == 0
    assert za["site_count_mismatch_pairs"] == 0


def test_pack_is_json_native_and_order_invariant(golden, pack):
    import json

    json.dumps(pack, allow_nan=False)  # no numpy scalars, no NaN
    shuffled = {k: v.sample(frac=1.0, random_state=7).reset_index(drop=True) for k, v in golden.items()}
    again = metric_pack(shuffled)
    for section in ("s2", "s3", "s4", "zone_alloc"):
        for key, value in pack[section].items():
            if isinstance(value, float):
                assert again[section][key] == pytest.approx(value, rel=1e-12, abs=1e-15), (section, key)
            else:
                assert again[section][key] == value, (section, key)


def test_escalated_pair_without_s4_rows_aborts(golden):
    golden["s4"] = golden["s4"][golden["s4"]["legal_country_iso"] != "BB"]
    with pytest.raises(EngineError) as err:
        metric_pack(golden)
    assert err.value.code == "E3A_MET_002_ESCALATED_PAIR_WITHOUT_S4_ROWS"
    assert "(1, BB)" in err.value.one_line()


def test_missing_table_or_column_is_coded(golden):
    with pytest.raises(EngineError, match="E3A_MET_001"):
        metric_pack({k: v for k, v in golden.items() if k != "s3"})
    golden["s2"] = golden["s2"].drop(columns=["share_effective"])
    with pytest.raises(EngineError, match="share_effective"):
        metric_pack(golden)


def test_count_surface_first_row_total_and_zero_total():
    frame = pd.DataFrame({
        "merchant_id": np.array([9, 9, 8, 8], dtype=np.uint64), "legal_country_iso": ["XX", "XX", "YY", "YY"],
        "tzid": ["a", "b", "a", "b"], "zone_site_count": [2, 1, 0, 0],
        # reported total is read from the FIRST row of a pair (3), not a later one (99)
        "zone_site_count_sum": [3, 99, 0, 0]})
    pairs = count_surface_pairs(frame).set_index("merchant_id")
    assert pairs.loc[9, "reported_total"] == 3 and bool(pairs.loc[9, "count_conserved"])
    assert pairs.loc[9, "top1_share"] == pytest.approx(2 / 3)
    # a pair with total 0: top1 0.0, no nonzero zone, conserved against its reported 0
    assert pairs.loc[8, "top1_share"] == 0.0 and pairs.loc[8, "nonzero_zone_count"] == 0


def _bucket(zc, pairs, esc):
    return {"zone_count_country": zc, "pairs": pairs, "pairs_escalated": esc, "escalation_rate": esc / pairs}


def test_zone_count_curve_chain_over_supported_buckets():
    curve = [
        _bucket(1, 32, 0),    # rate 0
        _bucket(2, 32, 16),   # 0.5    delta +0.5
        _bucket(3, 32, 8),    # 0.25   delta -0.25  -> violation, dip 0.25 > 0.10
        _bucket(4, 24, 0),    # 24 pairs < 25: dropped, does not break the chain
        _bucket(5, 32, 12),   # 0.375  delta +0.125 (vs zc3, the previous SUPPORTED bucket)
        _bucket(6, 32, 10),   # 0.3125 delta -0.0625 -> violation, dip 0.0625 (not > 0.10)
        _bucket(7, 25, 7),    # 0.28   25 pairs is supported (>=25); delta -0.0325 -> violation
        _bucket(8, 25, 7),    # 0.28   equal rate is fine
    ]
    shape = zone_count_curve_shape(curve)
    assert shape["zone_count_curve_supported_buckets"] == 7
    assert shape["zone_count_curve_monotonic_violations"] == 3
    assert shape["zone_count_curve_major_dip_max_abs"] == 0.25
    assert shape["zone_count_curve_major_dip_count_gt_010"] == 1


def test_s1_curve_end_to_end_with_supported_buckets(golden):
    # 30 pairs at zc=2 with 15 escalated (0.5), 40 pairs at zc=3 with 10 escalated (0.25): dip 0.25
    n2, n3 = 30, 40
    s1 = pd.DataFrame({
        "merchant_id": np.arange(n2 + n3, dtype=np.uint64), "legal_country_iso": ["ZZ"] * (n2 + n3),
        "site_count": [5] * (n2 + n3), "zone_count_country": [2] * n2 + [3] * n3,
        "is_escalated": [True] * 15 + [False] * 15 + [True] * 10 + [False] * 30,
        "decision_reason": ["default_escalation"] * (n2 + n3)})
    from engine.metrics.pack import s1_metrics

    s1m = s1_metrics(s1)
    assert s1m["zone_count_curve_supported_buckets"] == 2
    assert s1m["zone_count_curve_monotonic_violations"] == 1
    assert s1m["zone_count_curve_major_dip_max_abs"] == 0.25
    assert s1m["zone_count_curve_major_dip_count_gt_010"] == 1
    assert [b["supported"] for b in s1m["zone_count_curve"]] == [True, True]


def test_empty_populations_are_zero(golden):
    # no escalated pair at all: S3/S4/zone_alloc empty -> every statistic 0.0, conservation vacuously true
    golden["s1"]["is_escalated"] = False
    for name in ("s3", "s4", "zone_alloc"):
        golden[name] = golden[name].iloc[0:0]
    pack = metric_pack(golden)
    assert pack["s1"]["escalation_rate"] == 0.0
    assert pack["s3"]["merchant_share_std_median"] == 0.0 and pack["s3"]["merchant_share_std_groups"] == 0
    assert pack["s4"]["pairs_escalated_total"] == 0 and pack["s4"]["top1_share_median"] == 0.0
    assert pack["s4"]["escalated_multi_zone_rate"] == 0.0
    assert pack["s4"]["count_conservation_all_pairs"] is True
    assert pack["zone_alloc"]["top1_share_p75"] == 0.0
