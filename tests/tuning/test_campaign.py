"""The campaign as code (issue 8 item 6): file validation, selection rules, and run -> replay ending on
byte-identical authority policies."""

from __future__ import annotations

import json

import pytest

from engine.errors import EngineError
from engine.policies import PolicySet
from tuning.campaign import choose, load_campaign

MINI_P12 = """
phase: P1.2
study: c-P1.2
base_policies: policies
seeds: [42]
trials: 3
sampler: {name: tpe, seed: 5, n_startup_trials: 2, multivariate: true}
knobs:
  - {name: blend_lambda, low: 0.0, high: 0.15}
  - {name: hub_cap, value: 1.0}
  - {name: tail_gamma, value: 1.0}
objective:
  name: J
  terms:
    - {name: d_top1, metric: s2.top1_share_median_multi_tz, direction: down, weight: 1.0}
  second: {name: prior_jsd, metric: fidelity.prior_jsd_mean, direction: minimize}
vetoes:
  structural: [s6_pass, s7_pass, conservation, schema, realism_floors, fidelity]
"""
MINI_P2 = """
phase: P2
study: c-P2
base_policies: policies
seeds: [42]
trials: 3
sampler: {name: tpe, seed: 6, n_startup_trials: 2, multivariate: true}
knobs:
  - {name: concentration_scale, low: 0.3, high: 1.0}
  - {name: site_elasticity, low: 0.0, high: 1.0}
objective:
  name: J2
  terms:
    - {name: d_s3_std, metric: s3.merchant_share_std_median, direction: up, weight: 1.0}
vetoes:
  structural: [s6_pass, s7_pass, conservation, schema, realism_floors, fidelity]
"""
CAMPAIGN = """
campaign: mini
steps:
  - {author: true}
  - {phase: P0, baseline: {seed: 42}}
  - {phase: P1.2, sweep: {study: P1.2, name: c-P1.2}, select: pareto_min_second, promote_if: {min_J: 0.0},
     decision: PROMOTE_TO_P1_3, else: HOLD_P1_2}
  - {phase: P2, review: {decision: P2_REVIEWED, reason: a recorded review}}
  - {phase: P2, sweep: {study: P2, name: c-P2}, select: best_feasible, promote_if: {min_J: 0.0},
     decision: UNLOCK_P3, else: HOLD_P2}
  - {phase: P5, certify: {seeds: [42], holdout: 1}}
  - {phase: P6, freeze: true}
"""


def test_campaign_file_is_validated(tmp_path):
    bad = tmp_path / "c.yaml"
    for text, msg in (("steps: []", "non-empty"), ("steps: [{phase: P0}]", "exactly one"),
                      ("steps: [{review: {decision: X, reason: y}}]", "needs a phase"), ("steps: [", "malformed")):
        bad.write_text(text)
        with pytest.raises(EngineError) as err:
            load_campaign(bad)
        assert err.value.code == "E3A_TUN_060_CAMPAIGN" and msg in str(err.value)
    with pytest.raises(EngineError):
        load_campaign(tmp_path / "missing.yaml")


def test_selection_rules():
    rows = [{"trial": 1, "J": 0.2, "second": 0.01, "target_pass": True, "veto": "PASS"},
            {"trial": 2, "J": 0.4, "second": 0.02, "target_pass": False, "veto": "PASS"},
            {"trial": 3, "J": 0.1, "second": 0.005, "target_pass": True, "veto": "PASS"},
            {"trial": 4, "J": 0.9, "second": 0.001, "target_pass": True, "veto": "FAIL"},
            {"trial": 5, "J": -0.1, "second": 0.004, "target_pass": True, "veto": "PASS"}]
    assert choose(rows, "best_feasible", None)[0]["trial"] == 2          # vetoed trial 4 never wins
    assert choose(rows, "best_feasible", 0.0, require_targets=True)[0]["trial"] == 1
    pick, why = choose(rows, "pareto_min_second", None, on_front={2, 5})
    assert pick["trial"] == 5 and "trial 5" in why and "on the sweep's feasible front" in why
    assert choose(rows, "pareto_min_second", 0.0)[0]["trial"] == 3       # J floor drops trial 5
    assert choose(rows, "pareto_min_second", 0.15, require_targets=True)[0]["trial"] == 1
    pick, why = choose(rows, "pareto_min_second", 0.5)
    assert pick is None and "no feasible trial" in why
    with pytest.raises(EngineError):
        choose(rows, "nonsense", 0.0)


@pytest.mark.slow
def test_run_then_replay_ends_on_identical_policies_and_rebuilds_the_trail(project, capsys):
    from tuning.campaign import main
    from tuning.ladder import read_ladder
    studies = project / "studies"
    (studies / "P1.2.yaml").write_text(MINI_P12)
    (studies / "P2.yaml").write_text(MINI_P2)
    (project / "campaign.yaml").write_text(CAMPAIGN)
    assert main(["run", "--file", "campaign.yaml", "--no-progress", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)   # --json: stdout is the JSON alone
    ladder = read_ladder(project / "policies")
    assert [s["phase"] for s in ladder][:4] == ["AUTHOR", "P0", "P1.2", "P2"] and ladder[-1]["phase"] == "P6"
    assert any(s["decision"] == "P2_REVIEWED" and s.get("note") == "a recorded review" for s in ladder)
    digests = PolicySet.from_dir(project / "policies").digests
    assert main(["replay", "--file", "campaign.yaml", "--no-progress", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["replay_identical"] is True and second["digests"] == first["digests"] == dict(digests)
    assert [s["outcome"] for s in second["steps"]] == [s["outcome"] for s in first["steps"]]
    # a replay whose end differs from the committed authority is a coded failure
    (studies / "P2.yaml").write_text(MINI_P2.replace("seed: 6", "seed: 99").replace("high: 1.0}", "high: 0.9}", 1))
    with pytest.raises(EngineError) as err:
        main(["replay", "--file", "campaign.yaml", "--no-progress", "--json"])
    assert err.value.code == "E3A_TUN_061_REPLAY_MISMATCH"
