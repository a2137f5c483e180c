"""Fidelity metrics, gates and verdict on hand-built tables and evidence; every expected value by hand.

The hand-built world (clocks are the evidence's unit; names map to clocks through ``zone_clocks``):

| country | Z(c) name -> clock | populated clocks (population) | note |
|---|---|---|---|
| AA | A/1 -> K1, A/2 -> K2 | K1 100, K2 100 | multi-clock, 30 S4 outlets (enters realised) |
| BB | B/1 -> KB, B/2 -> KB, B/3 -> KB3 | KB 1000 | alias (two names of KB); B/3 unpopulated |
| CC | C/1 -> KC1 | KC1 900, KC2 100 | one zone, two populated clocks: KC2 outside Z(c) |
| DD | D/1 -> KD1, D/2 -> KD2 | KD1 50, KD2 50 | multi-clock, 29 S4 outlets (below the 30 rule) |
| EE | E/1 -> KE | KE 10 | single clock |
| FF | F/1 -> KF | (none) | no population at all |
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from engine.metrics import (FIDELITY_GATES, evaluate_gates, fidelity_metrics, fidelity_verdict, metric_pack,
                            run_verdict, share_table)
from engine.metrics.fidelity import jsd
from engine.world.evidence import FidelityEvidence
from tests.metrics.entropy_by_hand import H, JSD

J_AA_PRIOR = JSD([0.75, 0.25], [0.5, 0.5])     # H(.625,.375) - (H(.75,.25) + 1) / 2 = 0.048795...
J_CC = JSD([1.0, 0.0], [0.9, 0.1])             # H(.95,.05) - H(.9,.1) / 2 = 0.0518992
J_DD_REALISED = JSD([1.0, 0.0], [0.5, 0.5])    # H(.75,.25) - 1 / 2 = 0.311278...
J_BB_PRIOR = JSD([0.8, 0.2], [1.0, 0.0])       # H(.9,.1) - H(.8,.2) / 2 = 0.108032...


def test_hand_values_of_the_reference_divergences():
    assert J_AA_PRIOR == pytest.approx(0.0487949, abs=1e-7)
    assert J_CC == pytest.approx(0.0518992, abs=1e-7)
    assert J_DD_REALISED == pytest.approx(0.3112781, abs=1e-7)
    assert J_BB_PRIOR == pytest.approx(0.1080315, abs=1e-7)
    assert jsd(np.array([0.75, 0.25]), np.array([0.5, 0.5])) == pytest.approx(J_AA_PRIOR, rel=1e-12)
    assert jsd(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0, rel=1e-15)
    assert jsd(np.array([3.0, 1.0]), np.array([2.0, 2.0])) == pytest.approx(J_AA_PRIOR, rel=1e-12)  # normalised


def evidence(applicable: bool = True) -> FidelityEvidence:
    zc = pd.DataFrame([("AA", "A/1", "K1"), ("AA", "A/2", "K2"),
                       ("BB", "B/1", "KB"), ("BB", "B/2", "KB"), ("BB", "B/3", "KB3"),
                       ("CC", "C/1", "KC1"), ("DD", "D/1", "KD1"), ("DD", "D/2", "KD2"),
                       ("EE", "E/1", "KE"), ("FF", "F/1", "KF")], columns=["country_iso", "tzid", "clock"])
    pop = pd.DataFrame([("AA", "K1", 100), ("AA", "K2", 100), ("BB", "KB", 1000), ("CC", "KC1", 900),
                        ("CC", "KC2", 100), ("DD", "KD1", 50), ("DD", "KD2", 50), ("EE", "KE", 10)],
                       columns=["country_iso", "clock", "population"])
    return FidelityEvidence(zc, pop, applicable)


def tables(dd_extra: int = 0) -> dict[str, pd.DataFrame]:
    s2 = pd.DataFrame([("AA", "A/1", 0.75), ("AA", "A/2", 0.25), ("BB", "B/1", 0.5), ("BB", "B/2", 0.3),
                       ("BB", "B/3", 0.2), ("CC", "C/1", 1.0), ("DD", "D/1", 0.5), ("DD", "D/2", 0.5),
                       ("EE", "E/1", 1.0), ("FF", "F/1", 1.0)], columns=["country_iso", "tzid", "share_effective"])
    rows = [  # merchant, country, zone, outlets: AA 15/15 over two merchants, BB 20/5/5, CC 40, DD 29/0, EE 5, FF 6
        (1, "AA", "A/1", 10), (1, "AA", "A/2", 5), (2, "AA", "A/1", 5), (2, "AA", "A/2", 10),
        (1, "BB", "B/1", 20), (1, "BB", "B/2", 5), (1, "BB", "B/3", 5),
        (3, "CC", "C/1", 40),
        (4, "DD", "D/1", 29 + dd_extra), (4, "DD", "D/2", 0),
        (5, "EE", "E/1", 5), (6, "FF", "F/1", 6),
    ]
    s4 = pd.DataFrame(rows, columns=["merchant_id", "legal_country_iso", "tzid", "zone_site_count"])
    s4["merchant_id"] = s4["merchant_id"].astype(np.uint64)
    return {"s2": s2, "s4": s4}


@pytest.fixture
def metrics() -> dict:
    return fidelity_metrics(tables(), evidence())


def test_alias_count(metrics):
    assert metrics["alias_count"] == 1                      # BB: B/1 and B/2 are one clock


def test_prior_jsd_uses_countries_with_two_populated_clocks(metrics):
    # the mean: AA, CC (one zone, two populated clocks), DD; BB has two clocks (KB, KB3) but one populated: out of the
    # mean, but one country's gates read it (its people are all on KB; its prior puts .2 on KB3, where nobody lives)
    assert metrics["populated_multi_clock_countries"] == 3
    assert metrics["prior_jsd_countries"] == 3
    assert metrics["prior_jsd_mean"] == pytest.approx((J_AA_PRIOR + J_CC + 0.0) / 3, rel=1e-12)
    assert metrics["prior_jsd_max"] == pytest.approx(J_BB_PRIOR, rel=1e-12)   # BB's .108 > CC's .0519 > AA's .0488


def _one_country(people: dict, prior: dict, authored: dict | None = None) -> tuple[dict, FidelityEvidence]:
    """Tables and evidence of one country XX whose zone names are its clocks."""
    zc = pd.DataFrame([("XX", z, z) for z in prior], columns=["country_iso", "tzid", "clock"])
    pop = pd.DataFrame([("XX", z, n) for z, n in people.items() if n > 0], columns=["country_iso", "clock", "population"])
    s2 = pd.DataFrame([("XX", z, v) for z, v in prior.items()], columns=["country_iso", "tzid", "share_effective"])
    s4 = pd.DataFrame([("XX", z, int(round(1000 * v))) for z, v in prior.items()],
                      columns=["legal_country_iso", "tzid", "zone_site_count"])
    auth = None if authored is None else pd.DataFrame([("XX", z, v) for z, v in authored.items()],
                                                      columns=["country_iso", "clock", "share"])
    return {"s2": s2, "s4": s4}, FidelityEvidence(zc, pop, True, auth)


def test_prior_overserved_max_on_the_golden_is_bbs_empty_clock(metrics):
    # AA's (.75, .25) against people (.5, .5), CC's (1, 0) against (.9, .1), DD's (.5, .5) against (.5, .5): every
    # prior share is under 10 times its clock's people share; BB's .2 on KB3 is beyond 10 times its 0 people
    assert metrics["prior_overserved_max"] == pytest.approx(0.2, rel=1e-12)


def test_prior_overserved_mass_by_hand():
    """XX: 1,000,000 people on H, none on E (a zone of Z(c) without people), 9,000 on S: people shares
    (1,000,000, 0, 9,000) / 1,009,000. A prior of (.77, .03, .2) puts all of E's .03 and .2 - 10 x 9,000 / 1,009,000
    of S's beyond ten times their people; H is under. With an authored prior giving E .05 and S .1, E is within what
    the authoring law gives it and S is over by .2 - max(10 x 9,000 / 1,009,000, .1)."""
    tables, ev = _one_country({"H": 1_000_000, "E": 0, "S": 9_000}, {"H": 0.77, "E": 0.03, "S": 0.2})
    want = Fraction(3, 100) + (Fraction(2, 10) - Fraction(90_000, 1_009_000))
    assert float(want) == pytest.approx(0.1408028, abs=1e-7)
    assert fidelity_metrics(tables, ev)["prior_overserved_max"] == pytest.approx(float(want), rel=1e-12)
    gates = evaluate_gates(_fidelity_pack(fidelity_metrics(tables, ev)))["fidelity"]
    assert gates["3A-F07_prior_overserved_max"]["status"] == "FAIL"
    tables, ev = _one_country({"H": 1_000_000, "E": 0, "S": 9_000}, {"H": 0.77, "E": 0.03, "S": 0.2},
                              authored={"H": 0.85, "E": 0.05, "S": 0.1})
    want = Fraction(2, 10) - Fraction(1, 10)            # 10 x 9,000 / 1,009,000 = .0892 < the authored .1
    assert fidelity_metrics(tables, ev)["prior_overserved_max"] == pytest.approx(float(want), rel=1e-12)


def test_an_authored_prior_is_never_over_served():
    """The authoring law's own prior (its smoothing and floors give a clock of 60 people 0.35%) reads 0: the gate
    measures what tuning moves beyond it, not the law."""
    authored = {"M": 0.9965, "C": 0.0035}
    tables, ev = _one_country({"M": 900_000, "C": 60}, authored, authored=authored)
    assert fidelity_metrics(tables, ev)["prior_overserved_max"] == 0.0
    # P1.3's floor_scale x 3 on that clock: 1.05% of the country's prior, 0.7% beyond what the law gives it
    tables, ev = _one_country({"M": 900_000, "C": 60}, {"M": 0.9895, "C": 0.0105}, authored=authored)
    got = fidelity_metrics(tables, ev)["prior_overserved_max"]
    assert got == pytest.approx(0.0105 - 0.0035, rel=1e-9)
    assert evaluate_gates(_fidelity_pack(fidelity_metrics(tables, ev)))["fidelity"][
        "3A-F07_prior_overserved_max"]["status"] == "FAIL"


def test_a_near_empty_clock_reads_small_on_jsd_and_is_counted_as_over_served():
    """F07: 2.6% of a country's prior on a clock of 800 people beside 19.5 M (a world's Easter Island, 650 times its
    people) is 0.013 on F06's JSD, under its 0.03, and 2.56% of the prior beyond ten times those people, over F07's
    0.5%; the 1% that S2's top-1 >= 0.99 gate asks for is over too."""
    q_e = 800 / 19_500_800
    for easter, over in ((0.026, True), (0.01, True), (0.0035, False)):   # 0.0035: the authored prior
        tables, ev = _one_country({"S": 19_500_000, "E": 800}, {"S": 1 - easter, "E": easter})
        got = fidelity_metrics(tables, ev)
        assert got["prior_overserved_max"] == pytest.approx(easter - 10 * q_e, rel=1e-12)
        gates = evaluate_gates(_fidelity_pack(got))["fidelity"]
        assert gates["3A-F06_prior_jsd_max"]["status"] == "PASS"
        assert gates["3A-F07_prior_overserved_max"]["status"] == ("FAIL" if over else "PASS")
    tables, ev = _one_country({"S": 19_500_000, "E": 800}, {"S": 0.974, "E": 0.026})
    assert fidelity_metrics(tables, ev)["prior_jsd_max"] == pytest.approx(
        JSD([0.974, 0.026], [19_500_000 / 19_500_800, 800 / 19_500_800]), rel=1e-9)


def test_realised_jsd_needs_30_outlets(metrics):
    # AA: 30 outlets, 15/15 vs population 1/2, 1/2 -> 0; CC: 40 outlets all on KC1 -> J_CC; DD: 29 outlets -> out
    assert metrics["realised_jsd_countries"] == 2
    assert metrics["realised_jsd_mean"] == pytest.approx((0.0 + J_CC) / 2, rel=1e-12)
    at_30 = fidelity_metrics(tables(dd_extra=1), evidence())   # DD reaches 30 outlets (30/0 vs 1/2, 1/2)
    assert at_30["realised_jsd_countries"] == 3
    assert at_30["realised_jsd_mean"] == pytest.approx((0.0 + J_CC + J_DD_REALISED) / 3, rel=1e-12)


def test_unpopulated_share(metrics):
    # outlets: AA 30 + BB 30 + CC 40 + DD 29 + EE 5 + FF 6 = 140; unpopulated: BB B/3 5 + FF 6 = 11
    assert metrics["unpopulated_outlets"] == 11
    assert metrics["unpopulated_share"] == pytest.approx(11 / 140, rel=1e-15)


def test_outside_universe_share(metrics):
    # mean over the populated countries AA, BB, CC, DD, EE of the share outside Z(c): only CC, 100 / 1000
    assert metrics["outside_universe_share"] == pytest.approx(0.1 / 5, rel=1e-15)


def test_one_country_far_from_its_people_is_distorted_whatever_the_mean():
    """F06: a country's prior far from its people fails on its own, though the mean over the others passes."""
    ev = evidence()
    s2 = tables()["s2"].copy()
    s2.loc[s2["tzid"] == "A/1", "share_effective"], s2.loc[s2["tzid"] == "A/2", "share_effective"] = 0.98, 0.02
    got = fidelity_metrics({**tables(), "s2": s2}, ev)
    j_aa = JSD([0.98, 0.02], [0.5, 0.5])              # H(.74,.26) - (H(.98,.02) + 1) / 2 = 0.3855...
    assert got["prior_jsd_max"] == pytest.approx(j_aa, rel=1e-12)
    fine = {**FAITHFUL_METRICS, "prior_jsd_max": got["prior_jsd_max"]}
    gates = evaluate_gates(_fidelity_pack(fine))["fidelity"]
    assert [g for g, v in gates.items() if v["status"] == "FAIL"] == ["3A-F06_prior_jsd_max"]


def test_alias_names_count_as_one_clock_in_the_realised_shares():
    """BB's 20 + 5 outlets on B/1 and B/2 are 25 on one clock; with a second populated clock BB enters."""
    ev = evidence()
    pop = pd.concat([ev.clock_population, pd.DataFrame([("BB", "KB3", 1000)], columns=ev.clock_population.columns)])
    got = fidelity_metrics(tables(), FidelityEvidence(ev.zone_clocks, pop, True))
    j_bb_prior = JSD([0.8, 0.2], [0.5, 0.5])          # S2: B/1 + B/2 = 0.8 on KB, B/3 0.2 on KB3
    j_bb_real = JSD([25 / 30, 5 / 30], [0.5, 0.5])
    assert got["prior_jsd_countries"] == 4
    assert got["prior_jsd_mean"] == pytest.approx((J_AA_PRIOR + j_bb_prior + J_CC) / 4, rel=1e-12)
    assert got["realised_jsd_mean"] == pytest.approx((0.0 + j_bb_real + J_CC) / 3, rel=1e-12)
    assert got["unpopulated_share"] == pytest.approx(6 / 140, rel=1e-15)     # only FF now


def test_share_table_per_country_and_clock():
    t = share_table(tables(), evidence()).set_index(["country_iso", "clock"])
    assert t.loc[("AA", "K1"), ["population_share", "prior_share", "realised_share"]].tolist() == \
        pytest.approx([0.5, 0.75, 0.5])
    assert t.loc[("BB", "KB"), ["population_share", "prior_share", "realised_share"]].tolist() == \
        pytest.approx([1.0, 0.8, 25 / 30])
    assert t.loc[("BB", "KB3"), ["population_share", "prior_share", "realised_share"]].tolist() == \
        pytest.approx([0.0, 0.2, 5 / 30])
    assert t.loc[("CC", "KC2"), ["population_share", "prior_share", "realised_share"]].tolist() == \
        pytest.approx([0.1, 0.0, 0.0])
    assert int(t.loc[("DD", "KD1"), "s4_outlets"]) == 29
    assert math.isnan(t.loc[("FF", "KF"), "population_share"])              # no population evidence at all
    for col in ("population_share", "prior_share", "realised_share"):
        sums = t[col].groupby(level="country_iso").sum(min_count=1).dropna()
        assert sums.to_numpy() == pytest.approx(np.ones(len(sums)))
    # one row per (country, clock) of Z(c) or of the evidence: BB's two names are one row, CC's KC2 is a row
    assert set(t.index) == {("AA", "K1"), ("AA", "K2"), ("BB", "KB"), ("BB", "KB3"), ("CC", "KC1"), ("CC", "KC2"),
                            ("DD", "KD1"), ("DD", "KD2"), ("EE", "KE"), ("FF", "KF")}
    assert len(t) == 10

# ----------------------------------------------------------------------------- gates and verdicts

def _fidelity_pack(metrics: dict) -> dict:
    return {"fidelity": metrics}


def test_gate_statuses_on_the_golden(metrics):
    block = evaluate_gates(_fidelity_pack(metrics))["fidelity"]
    assert list(block) == [g.gate_id for g in FIDELITY_GATES] == [
        "3A-F01_alias_count", "3A-F02_unpopulated_share", "3A-F03_prior_jsd_mean", "3A-F04_realised_jsd_mean",
        "3A-F05_outside_universe_share", "3A-F06_prior_jsd_max", "3A-F07_prior_overserved_max",
        "3A-F08_realised_jsd_max", "3A-F10_prior_top1_unsupported"]
    status = {gid: g["status"] for gid, g in block.items()}
    # alias 1 > 0; 11/140 = .079 > .005; (.0488 + .0519 + 0)/3 = .0336 > .02; .0259 <= .03; .02 > .01;
    # BB's .108 > .03; BB's .2 over-served > .005; no country of 30 merchants (F08 reads 0)
    assert status == {"3A-F01_alias_count": "FAIL", "3A-F02_unpopulated_share": "FAIL",
                      "3A-F03_prior_jsd_mean": "FAIL", "3A-F04_realised_jsd_mean": "PASS",
                      "3A-F05_outside_universe_share": "FAIL", "3A-F06_prior_jsd_max": "FAIL",
                      "3A-F07_prior_overserved_max": "FAIL", "3A-F08_realised_jsd_max": "PASS",
                      "3A-F10_prior_top1_unsupported": "FAIL"}
    # F10: BB's .2 on KB3, where nobody lives and no authored share stands, is all that keeps its top-1 (.8) under
    # .99; capped, KB keeps .8 of .8 (1.0). AA, CC (its prior's one clock: 1.0), DD and EE, FF (one clock) do not count
    assert metrics["prior_top1_unsupported"] == 1
    assert metrics["realised_jsd_max"] == 0.0 and metrics["realised_jsd_max_countries"] == 0
    assert block["3A-F04_realised_jsd_mean"]["threshold"] == 0.03 and block["3A-F04_realised_jsd_mean"]["op"] == "<="
    assert block["3A-F02_unpopulated_share"]["value"] == pytest.approx(11 / 140)
    assert fidelity_verdict(evaluate_gates(_fidelity_pack(metrics))) == "DISTORTED"


FAITHFUL_METRICS = {"applicable": True, "alias_count": 0, "unpopulated_share": 0.005, "prior_jsd_mean": 0.02,
                    "prior_jsd_max": 0.03, "prior_overserved_max": 0.005, "realised_jsd_mean": 0.03,
                    "realised_jsd_max": 0.05, "outside_universe_share": 0.01, "prior_top1_unsupported": 0}


def test_thresholds_are_inclusive_and_faithful():
    gates = evaluate_gates(_fidelity_pack(dict(FAITHFUL_METRICS)))
    assert all(g["status"] == "PASS" for g in gates["fidelity"].values())
    assert fidelity_verdict(gates) == "FAITHFUL"


@pytest.mark.parametrize("key,value", [("alias_count", 1), ("unpopulated_share", 0.00501),
                                       ("prior_jsd_mean", 0.0201), ("realised_jsd_mean", 0.0301),
                                       ("outside_universe_share", 0.0101), ("prior_jsd_max", 0.0301),
                                       ("prior_overserved_max", 0.00501), ("realised_jsd_max", 0.0501),
                                       ("prior_top1_unsupported", 1)])
def test_one_fidelity_miss_is_distorted(key, value):
    gates = evaluate_gates(_fidelity_pack({**FAITHFUL_METRICS, key: value}))
    failed = [gid for gid, g in gates["fidelity"].items() if g["status"] == "FAIL"]
    assert len(failed) == 1 and fidelity_verdict(gates) == "DISTORTED"


def test_not_applicable_is_na_never_fail():
    worst = {**FAITHFUL_METRICS, "applicable": False, "alias_count": 5, "unpopulated_share": 0.5}
    gates = evaluate_gates(_fidelity_pack(worst))
    assert {g["status"] for g in gates["fidelity"].values()} == {"N/A"}
    assert fidelity_verdict(gates) == "NOT_APPLICABLE"
    m = fidelity_metrics(tables(), evidence(applicable=False))
    assert m["applicable"] is False and m["alias_count"] == 1            # still measured and reported
    assert fidelity_verdict(evaluate_gates(_fidelity_pack(m))) == "NOT_APPLICABLE"


def test_unmeasured_without_evidence(golden):
    pack = metric_pack(golden)
    assert "fidelity" not in pack
    gates = evaluate_gates(pack)
    assert "fidelity" not in gates and fidelity_verdict(gates) == "UNMEASURED"
    assert fidelity_verdict({"hard": {}, "stretch": {}, "fidelity": {}}) == "UNMEASURED"


def test_verdict_branches_on_hand_built_gate_tables():
    p, f, na = {"status": "PASS"}, {"status": "FAIL"}, {"status": "N/A"}
    assert fidelity_verdict({"fidelity": {"a": p, "b": p}}) == "FAITHFUL"
    assert fidelity_verdict({"fidelity": {"a": p, "b": f}}) == "DISTORTED"
    assert fidelity_verdict({"fidelity": {"a": na, "b": f}}) == "NOT_APPLICABLE"
    assert fidelity_verdict({"hard": {"x": p}}) == "UNMEASURED"


def test_pack_with_evidence_on_the_golden_tables(golden):
    """The metric-pack golden tables (countries AA..DD, zones A/1..D/2) with a hand-built evidence."""
    zc = pd.DataFrame([("AA", "A/1", "A/1"), ("AA", "A/2", "A/2"), ("AA", "A/3", "A/3"), ("BB", "B/1", "B/1"),
                       ("BB", "B/2", "B/1"), ("CC", "C/1", "C/1"), ("DD", "D/1", "D/1"), ("DD", "D/2", "D/2")],
                      columns=["country_iso", "tzid", "clock"])
    pop = pd.DataFrame([("AA", "A/1", 60), ("AA", "A/2", 30), ("AA", "A/3", 10), ("BB", "B/1", 7),
                        ("CC", "C/1", 5), ("DD", "D/1", 1), ("DD", "D/2", 1)],
                       columns=["country_iso", "clock", "population"])
    pack = metric_pack(golden, FidelityEvidence(zc, pop, True))
    assert set(pack) == {"s1", "s2", "s3", "s4", "zone_alloc", "fidelity"}
    fid = pack["fidelity"]
    # S2 AA 0.6/0.3/0.1 = population; DD 0.5/0.5 = population -> prior JSD 0 over 2 countries
    assert fid["prior_jsd_countries"] == 2 and fid["prior_jsd_mean"] == pytest.approx(0.0, abs=1e-15)
    # S4 AA: 23+4+1 = 28 / 1 / 1 = 30 outlets vs .6/.3/.1; DD: 3 outlets (< 30) out
    assert fid["realised_jsd_countries"] == 1
    assert fid["realised_jsd_mean"] == pytest.approx(JSD([28 / 30, 1 / 30, 1 / 30], [0.6, 0.3, 0.1]), rel=1e-12)
    assert fid["alias_count"] == 1 and fid["unpopulated_share"] == 0.0 and fid["outside_universe_share"] == 0.0
    gates = evaluate_gates(pack)
    assert set(gates) == {"hard", "stretch", "fidelity"}
    assert run_verdict(gates) == run_verdict({k: gates[k] for k in ("hard", "stretch")})  # plan verdict unchanged
    assert gates["fidelity"]["3A-F01_alias_count"]["status"] == "FAIL"
    assert fidelity_verdict(gates) == "DISTORTED"


def test_a_worlds_evidence_carries_its_authored_prior_and_the_authored_baseline_reads_zero():
    """The default world's evidence holds the authoring law's prior per (country, clock), each country's summing to
    one; the authored baseline's over-served mass is 0 up to rounding, and moving mass onto its small clocks is not."""
    from engine import default_world, run_chain
    from engine.policies.world_baseline import authored_baseline
    from tuning.study.knobs import apply_knobs

    world = default_world()
    authored = world.evidence.authored_prior
    assert authored.groupby("country_iso")["share"].sum().to_numpy() == pytest.approx(1.0, abs=1e-12)
    base = authored_baseline(world)
    assert run_chain(base, 42, world).pack["fidelity"]["prior_overserved_max"] < 1e-12
    blended = run_chain(apply_knobs(base, {"blend_lambda": 0.2}), 42, world).pack
    assert blended["fidelity"]["prior_overserved_max"] > 0.005


def _forced_world(merchants: int, small_outlets: int) -> tuple[dict, FidelityEvidence]:
    """Country PT of 9,680 people on Lisbon and 320 on Madeira, ``merchants`` merchants of 10 outlets each, each with
    ``small_outlets`` of them on Madeira (a second-zone safeguard's forced share), beside five faithful countries of
    two even clocks and 40 merchants each."""
    zc_rows = [("PT", "Europe/Lisbon", "L"), ("PT", "Atlantic/Madeira", "M")]
    pop_rows = [("PT", "L", 9680), ("PT", "M", 320)]
    s4_rows = []
    for m in range(merchants):
        s4_rows += [(m, "PT", "Europe/Lisbon", 10 - small_outlets), (m, "PT", "Atlantic/Madeira", small_outlets)]
    for i in range(5):
        c = f"F{i}"
        zc_rows += [(c, f"{c}/a", f"{c}a"), (c, f"{c}/b", f"{c}b")]
        pop_rows += [(c, f"{c}a", 500), (c, f"{c}b", 500)]
        s4_rows += [(1000 * (i + 1) + m, c, f"{c}/{z}", 5) for m in range(40) for z in "ab"]
    zc = pd.DataFrame(zc_rows, columns=["country_iso", "tzid", "clock"])
    s2 = zc[["country_iso", "tzid"]].assign(share_effective=[0.968, 0.032] + [0.5] * 10)   # priors as the people
    s4 = pd.DataFrame(s4_rows, columns=["merchant_id", "legal_country_iso", "tzid", "zone_site_count"])
    s4["merchant_id"] = s4["merchant_id"].astype(np.uint64)
    pop = pd.DataFrame(pop_rows, columns=["country_iso", "clock", "population"])
    return {"s2": s2, "s4": s4}, FidelityEvidence(zc, pop, True)


def test_f08_one_country_s_outlets_forced_onto_its_small_clock_are_distorted_whatever_the_mean():
    """F08: 30 merchants each with 2 of 10 outlets on Madeira (20% of PT's outlets for 3.2% of its people): the JSD of
    (0.8, 0.2) from (0.968, 0.032) is 0.0546 by hand, over 0.05, while the five faithful countries bring F04's mean to
    0.0096 (PASS). One outlet of 10 (0.0142) passes. With 29 merchants PT does not enter F08 (its scatter could be a
    few merchants' draws), and F04's mean alone passes it."""
    want = H(0.884, 0.116) - (H(0.8, 0.2) + H(0.968, 0.032)) / 2          # m = (0.884, 0.116)
    assert want == pytest.approx(0.05463, abs=1e-5)
    tables_, ev = _forced_world(30, 2)
    got = fidelity_metrics(tables_, ev)
    assert got["realised_jsd_max"] == pytest.approx(want, rel=1e-12) and got["realised_jsd_max_countries"] == 6
    assert got["realised_jsd_mean"] == pytest.approx(want / 6, rel=1e-12)
    gates = evaluate_gates(_fidelity_pack(got))["fidelity"]
    assert [g for g, v in gates.items() if v["status"] == "FAIL"] == ["3A-F08_realised_jsd_max"]
    assert fidelity_verdict(evaluate_gates(_fidelity_pack(got))) == "DISTORTED"
    one = fidelity_metrics(*_forced_world(30, 1))   # 10% on Madeira: (0.9, 0.1)
    assert one["realised_jsd_max"] == pytest.approx(H(0.934, 0.066) - (H(0.9, 0.1) + H(0.968, 0.032)) / 2, rel=1e-12)
    assert one["realised_jsd_max"] < 0.05
    few = fidelity_metrics(*_forced_world(29, 2))
    assert few["realised_jsd_max_countries"] == 5 and few["realised_jsd_max"] == 0.0
    assert few["realised_jsd_mean"] == pytest.approx(want / 6, rel=1e-12)
