"""Held-out seeds (issue 8 item 4) and the fidelity requirement of certification and promotion."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest

from tuning.authority.holdout import HOLDOUT_HIGH, HOLDOUT_LOW, holdout_seeds, tuning_seeds


def _independent(i: int) -> int:
    label = b"3A.holdout"
    h = hashlib.sha256(struct.pack("<I", len(label)) + label + struct.pack("<Q", i)).digest()
    return HOLDOUT_LOW + int.from_bytes(h[:8], "little") % (HOLDOUT_HIGH - HOLDOUT_LOW)


def test_holdout_seeds_follow_the_documented_law_and_avoid_tuning_seeds():
    seeds = holdout_seeds(50)
    assert seeds == [_independent(i) for i in range(50)]          # no collision in the first 50
    assert len(set(seeds)) == 50 and all(HOLDOUT_LOW <= s < HOLDOUT_HIGH for s in seeds)
    assert holdout_seeds(10) == seeds[:10]                         # the same N gives the same seeds
    skipped = holdout_seeds(5, exclude={seeds[0], seeds[2]})
    assert skipped == [seeds[1], seeds[3], seeds[4], seeds[5], seeds[6]]
    tuned = tuning_seeds()
    assert {42, 7, 101, 202} <= tuned and not tuned & set(holdout_seeds(200, tuned))


def test_the_holdout_report_does_not_depend_on_how_many_seeds_run_at_once():
    from pathlib import Path

    from engine import PolicySet
    from tuning.authority.holdout import holdout_report

    policies, seeds = PolicySet.from_dir(Path(__file__).resolve().parents[2] / "policies"), holdout_seeds(5)
    one, two = (holdout_report(policies, seeds, threads=n) for n in (1, 2))
    assert one.pop("wall_seconds") >= 0 and two.pop("wall_seconds") >= 0
    assert one == two and list(one["per_seed"]) == seeds


def test_certify_reports_fidelity_and_holdout_rate_in_summary_and_mlflow(project, capsys):
    from tuning.certify import main
    from tuning.trail.tracking import client
    assert main(["--authority", "--seeds", "42,7", "--holdout", "3", "--no-progress", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["fidelity"] == {"42": "FAITHFUL", "7": "FAITHFUL"} or summary["fidelity"] == {42: "FAITHFUL", 7: "FAITHFUL"}
    assert summary["fidelity_verdict"] == "FAITHFUL"
    hold = summary["holdout"]
    assert summary["seedpack_certified"] == (summary["verdict"] in ("PASS_B", "PASS_BPLUS"))
    # certified is what --require-certified asks: the seedpack and, with held-out seeds, B and FAITHFUL on >= 98%
    assert summary["certified"] == (summary["seedpack_certified"] and hold["pass_rate_b_faithful"] >= 0.98)
    lo, hi = hold["intervals"]["pass_rate_bplus_faithful"]
    assert lo <= hold["pass_rate_bplus_faithful"] <= hi and hi - lo > 0.3   # three seeds tell little
    assert hold["n"] == 3 and hold["seeds"] == holdout_seeds(3, tuning_seeds())
    verdicts = [r["verdict"] for r in hold["per_seed"].values()]
    assert hold["pass_rate_bplus"] == pytest.approx(verdicts.count("PASS_BPLUS") / 3)
    run = client().get_run(summary["mlflow_run_id"])
    assert run.data.metrics["holdout.n"] == 3
    assert run.data.metrics["holdout.pass_rate_bplus"] == pytest.approx(hold["pass_rate_bplus"])
    assert run.data.tags["fidelity_verdict"] == "FAITHFUL"


def test_freeze_requires_fidelity():
    from tuning.authority.freeze import freeze_status
    assert freeze_status("PASS_BPLUS", "FAITHFUL") == "FROZEN_CERTIFIED_BPLUS"
    assert freeze_status("PASS_BPLUS", "DISTORTED") == "FROZEN_BEST_EFFORT_DISTORTED"
    assert freeze_status("FAIL_REALISM", "FAITHFUL") == "FROZEN_BEST_EFFORT_BELOW_B"


DISTORTING = """
phase: P1.2
study: t-distort
base_policies: policies
seeds: [42]
trials: 1
sampler: {name: random, seed: 3}
knobs:
  - {name: blend_lambda, choices: [0.8]}
  - {name: hub_cap, value: 0.4}
  - {name: tail_gamma, value: 1.0}
objective:
  name: J
  terms:
    - {name: d_top1, metric: s2.top1_share_median_multi_tz, direction: down, weight: 1.0}
vetoes:
  structural: [s6_pass, s7_pass, conservation, schema, realism_floors]
"""


def test_promote_refuses_a_distorted_candidate_and_the_fidelity_veto_catches_it(project, capsys):
    from engine.core.errors import EngineError
    from engine.policies import PolicySet
    from tuning.authority.promotion import promote
    from tuning.sweep.__main__ import main
    (project / "studies" / "distort.yaml").write_text(DISTORTING)
    assert main(["--phase", "distort", "--no-progress", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    row = summary["top"][0]
    assert row["feasible"] is True and row["fidelity"] == "DISTORTED"   # no fidelity veto in this study
    before = PolicySet.from_dir(project / "policies").digests
    with pytest.raises(EngineError) as err:
        promote(row["mlflow_run_id"], project / "policies", "SHOULD_NOT_LAND", None, reopen="test a distorted candidate")
    assert err.value.code == "E3A_TUN_026_CANDIDATE_NOT_FAITHFUL"
    assert PolicySet.from_dir(project / "policies").digests == before
    vetoed = DISTORTING.replace("t-distort", "t-distort-veto").replace("realism_floors]", "realism_floors, fidelity]")
    (project / "studies" / "distort2.yaml").write_text(vetoed)
    assert main(["--phase", "distort2", "--no-progress", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["top"][0]
    assert row["feasible"] is False and "FIDELITY_DISTORTED" in row["vetoes"]


def test_a_best_effort_freeze_blocks_on_its_certification_and_names_the_frontiers_trade_off_apart(project):
    """The blocking gates of a best-effort P6 are those its certification measured failing on the authority, each
    once; what the P2 frontier found no faithful trial meeting together is named apart (a gate the authority
    passes is never called blocking)."""
    from pathlib import Path

    from tuning.authority.freeze import freeze
    from tuning.authority.ladder import record_step

    record_step("P5", "FAIL_REALISM", policies_dir=Path("policies"), source_run_id="r" * 32,
                evidence={"fidelity": "FAITHFUL", "failing_gates": "3A-V04_s3_std,3A-S04_s3_std,3A-V04_s3_std",
                          "seeds": "42,7,101,202", "holdout_seeds": 8, "holdout_pass_rate_b_faithful": 0.5,
                          "holdout_pass_rate_bplus_faithful": 0.0})
    step = freeze(Path("policies"), target="PASS_BPLUS", trade_off=["S3 std >= 0.04 (B+)", "S4 top1 p75 <= 0.97 (B)"])
    assert step["decision"] == "FROZEN_BEST_EFFORT_BELOW_B"
    assert step["evidence"]["blocking"] == "3A-V04_s3_std,3A-S04_s3_std"
    assert step["evidence"]["frontier_trade_off"] == "S3 std >= 0.04 (B+),S4 top1 p75 <= 0.97 (B)"
    assert "blocking (failing on its certification): 3A-V04_s3_std,3A-S04_s3_std; the P2 frontier found no " \
           "faithful trial meeting S3 std >= 0.04 (B+) and S4 top1 p75 <= 0.97 (B) together" in step["note"]


def test_a_certification_of_part_of_the_seedpack_is_never_frozen_nor_recorded(project, capsys):
    """Helper 61 froze B+ from ``certify --record --seeds 42`` (one seed: a cross-seed spread of 0) an authority whose
    seedpack is B by its spread (3A-X01) alone: the freeze refuses a certification that did not run the whole
    seedpack, and ``certify --record`` refuses such seeds before running them."""
    from pathlib import Path

    from engine.core.errors import EngineError
    from tuning.authority.freeze import freeze
    from tuning.authority.ladder import record_step
    from tuning.certify import main as certify_main
    from tuning.common.errors import invoke

    record_step("P5", "PASS_BPLUS", policies_dir=Path("policies"), source_run_id="r" * 32,
                evidence={"fidelity": "FAITHFUL", "failing_gates": "none", "seeds": "42", "holdout_seeds": 1,
                          "holdout_pass_rate_b_faithful": 1.0, "holdout_pass_rate_bplus_faithful": 1.0})
    with pytest.raises(EngineError) as err:
        freeze(Path("policies"))
    assert err.value.code == "E3A_TUN_030_CERTIFY_INPUT" and "ran seeds 42, not the plan's seedpack (missing " \
        "7,101,202)" in str(err.value) and "--record --holdout 200" in str(err.value)
    capsys.readouterr()
    assert invoke(certify_main, ["--authority", "--record", "--seeds", "42,7", "--no-progress"]) == 2
    assert capsys.readouterr().err.strip().startswith("E3A_TUN_050_USAGE: --record records the P5 certification of "
                                                      "the plan's seedpack (42,7,101,202): --seeds 42,7 misses 101,202")


def test_a_seedpack_b_by_its_spread_alone_names_x01_as_blocking():
    """Helper 61's freeze named S04-S06 (failing on 2 of 200 held-out seeds) where the seedpack was B by 3A-X01."""
    from tuning.authority.certification import failing_gates

    summary = {"seeds": [42, 7], "detail": {
        "gate_matrix": {"B": {"3A-S04": {42: "PASS", 7: "PASS"}}},
        "stability": {"3A-X01_cv_primary_medians": {"B": {"status": "PASS"}, "BPLUS": {"status": "FAIL"},
                                                    "verdict_bearing": True},
                      "3A-X02_escalation_rate_corridor": {"status": "FAIL", "verdict_bearing": False},
                      "3A-X03_no_hard_failure_any_seed": {"status": "PASS", "verdict_bearing": True}}},
        "holdout": {"failing": {"3A-S04": 2, "3A-S05": 1}, "pass_rate_bplus_faithful": 0.985}}
    assert failing_gates(summary) == ["3A-X01_cv_primary_medians"]   # 2 of 200 held-out seeds: inside the allowance
    summary["holdout"]["pass_rate_bplus_faithful"] = 0.95
    assert failing_gates(summary) == ["3A-X01_cv_primary_medians", "3A-S04", "3A-S05"]


@pytest.mark.parametrize("text, seeds", [("42,7", [42, 7]), (" 42 , 7 ", [42, 7]), ("42", [42]), ("42,,7", None),
                                         ("", None), ("42,", None), ("42,42", None), ("x", None)])
def test_certify_seeds_are_comma_separated_integers_none_empty(text, seeds):
    from engine.core.errors import EngineError
    from tuning.certify import parse_seeds

    if seeds is None:
        with pytest.raises(EngineError) as err:
            parse_seeds(text)
        assert err.value.code == "E3A_TUN_030_CERTIFY_INPUT"
    else:
        assert parse_seeds(text) == seeds


def test_the_results_hint_names_the_authority_folder_it_is_about(tmp_path):
    import shutil
    from pathlib import Path

    from tuning.results import _holdout_lines

    repo = Path(__file__).resolve().parents[2]
    folder = tmp_path / "my auth"
    shutil.copytree(repo / "policies", folder, ignore=shutil.ignore_patterns("ladder.yaml", ".*"))
    line = _holdout_lines(folder)[0]
    assert line.endswith(f"--record --holdout 200 --policies '{folder}').")   # runnable as written, from here


def test_each_failing_gate_is_named_once_where_it_first_failed():
    """A fidelity gate failing on the seedpack and on held-out seeds is named once (a user's P5 step listed
    3A-F03 and 3A-F04 twice each); the order: seedpack gates, fidelity gates, then held-out-only gates."""
    from tuning.authority.certification import failing_gates

    summary = {"seeds": [42, 7],
               "detail": {"gate_matrix": {"hard": {"3A-V04_s3_std": {"42": "FAIL", "7": "PASS"},
                                                   "3A-V01_s2_top1": {"42": "PASS", "7": "PASS"}}}},
               "fidelity_failing": {42: ["3A-F04_realised_jsd_mean", "3A-F03_prior_jsd_mean"],
                                    7: ["3A-F03_prior_jsd_mean"]},
               "holdout": {"failing": {"3A-F03_prior_jsd_mean": 9, "3A-S05_s4_top1": 3, "3A-V04_s3_std": 2,
                                       "3A-F04_realised_jsd_mean": 1}}}
    assert failing_gates(summary) == ["3A-V04_s3_std", "3A-F03_prior_jsd_mean", "3A-F04_realised_jsd_mean",
                                      "3A-S05_s4_top1"]


def test_not_applicable_fidelity_fails_nothing_and_is_never_reported_as_another_verdict():
    from engine import fidelity_holds, fidelity_overall
    from tuning.authority.freeze import freeze_status

    assert [fidelity_holds(v) for v in ("FAITHFUL", "NOT_APPLICABLE", "UNMEASURED", "DISTORTED")] == \
        [True, True, False, False]
    assert fidelity_overall(["FAITHFUL", "FAITHFUL"]) == "FAITHFUL"
    assert fidelity_overall(["NOT_APPLICABLE"] * 4) == "NOT_APPLICABLE"       # not DISTORTED, not FAITHFUL
    assert fidelity_overall(["FAITHFUL", "DISTORTED", "NOT_APPLICABLE"]) == "DISTORTED"
    assert fidelity_overall(["UNMEASURED", "FAITHFUL"]) == "UNMEASURED"
    held = {"holdout_seeds": 20, "holdout_pass_rate_bplus_faithful": 1.0}
    assert freeze_status("PASS_BPLUS", "NOT_APPLICABLE", held) == "FROZEN_CERTIFIED_BPLUS"
    assert freeze_status("PASS_BPLUS", "UNMEASURED", held) == "FROZEN_BEST_EFFORT_DISTORTED"


NO_EVIDENCE_ALPHAS = """version: v1.0.0
countries:
  AQ:
    tzid_alphas:
      - {tzid: Antarctica/Casey, alpha: 12.0}
      - {tzid: Antarctica/Davis, alpha: 6.0}
  FR:
    tzid_alphas:
      - {tzid: Europe/Paris, alpha: 20.0}
"""


def test_certify_on_a_world_without_evidence_says_not_applicable_and_grades_the_plan_gates(tmp_path):
    """A world of an alpha pack and outlets, no population, with a country of two clocks GeoNames has no people on
    (AQ): GeoNames cannot grade it, so every seed is NOT_APPLICABLE; certify (as a program) reports NOT_APPLICABLE
    (it reported DISTORTED, FAITHFUL 0%) and certifies on the plan's gates alone."""
    from tests.tuning.conftest import make_project, run_here, run_module

    world = tmp_path / "w"
    world.mkdir()
    (world / "country_zone_alphas.yaml").write_text(NO_EVIDENCE_ALPHAS)
    rows = ["merchant_id,legal_country_iso,site_count"] + [f"{i},{'AQ' if i % 3 else 'FR'},{2 + i % 13}"
                                                          for i in range(600)]
    (world / "outlets.csv").write_text("\n".join(rows) + "\n")
    root = make_project(tmp_path / "proj")
    assert run_here(root, "tuning.author", "--world", str(world), "--into", "auth").returncode == 0
    out = run_module(root, "tuning.certify", "--world", str(world), "--policies", "auth", "--holdout", "2",
                     "--no-progress", "--require-certified")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "fidelity NOT_APPLICABLE (the world brings no population evidence" in out.stdout
    assert "; certified true" in out.stdout and "FAITHFUL" not in out.stdout and "DISTORTED" not in out.stdout


def test_the_results_floor_line_says_which_countries_the_non_uniform_test_judged():
    from tuning.results import _floors_line

    base = {"alpha_sum_min": 20.0, "alpha_sum_max": 95.9, "nonuniform_share": 1.0, "passed": True}
    said = [_floors_line({**base, "large_countries": n, "judged_countries": j, "evenly_populated": even})
            for n, j, even in ((9, 9, []), (9, 7, ["AU", "KZ"]), (8, 0, ["AU", "US"]), (0, 0, []))]
    assert "100% of the 9 large multi-zone countries non-uniform (law >= 70%): PASS." in said[0]
    assert "100% of the 7 large multi-zone countries whose people are not evenly spread (AU, KZ are)" in said[1]
    assert "none of the 8 large multi-zone countries judged non-uniform or not: their people are evenly spread " \
           "(AU, US)" in said[2]
    assert "no large multi-zone country (4 zones or more) to judge non-uniform" in said[3]   # not "100% of the 0"


@pytest.mark.parametrize("k,n", [(197, 200), (976, 1000), (200, 200), (0, 50), (1, 3)])
def test_the_wilson_interval_solves_its_defining_quadratic(k, n):
    """Each end p of the 95% Wilson interval of k in n satisfies (k/n - p)^2 = z^2 p (1 - p) / n (the score test at
    the edge of acceptance), the interval holds k/n, and 197 of 200 cannot tell 98% from 96% or 99.4%."""
    from tuning.authority.holdout import wilson

    z = 1.959963984540054
    lo, hi = wilson(k, n)
    assert lo <= k / n <= hi
    for p in (lo, hi):
        if 0.0 < p < 1.0:
            assert (k / n - p) ** 2 == pytest.approx(z * z * p * (1 - p) / n, rel=1e-9)
    if k == n:
        assert hi == 1.0
    if (k, n) == (197, 200):
        assert lo < 0.96 and hi > 0.994


def test_a_fidelity_gate_over_no_country_says_so_in_the_results_table():
    """F08 over a world where no country has 30 merchants reads 0.0 and passes: the Results table says it read no
    country (helper 44: 0.0000 PASS on every seed beside F04's 0.02-0.03) instead of showing a clean pass."""
    from tuning.results import _cell

    gate = {"metric": "fidelity.realised_jsd_max", "value": 0.0, "threshold": 0.05, "op": "<=", "status": "PASS"}
    assert _cell(gate, {"fidelity": {"realised_jsd_max_countries": 0}}) == "0.0000 PASS (no country read)"
    assert _cell(gate, {"fidelity": {"realised_jsd_max_countries": 6}}) == "0.0000 PASS"
    plan = {"metric": "s4.top1_share_median", "value": 0.5, "threshold": 0.85, "op": "<=", "status": "PASS"}
    assert _cell(plan, {"fidelity": {}}) == "0.5000 PASS"
