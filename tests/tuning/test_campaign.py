"""The campaign as code (issue 8 item 6): file validation, selection rules, and run -> replay ending on
byte-identical authority policies."""

from __future__ import annotations

import json
import subprocess

import pytest

from engine.core.errors import EngineError
from engine.policies import PolicySet
from tests.tuning.conftest import REPO
from tuning.campaign.__main__ import load_campaign
from tuning.campaign.rules import choose

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
  - {phase: P5, certify: {seeds: [42, 7, 101, 202], holdout: 1}}
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


def test_a_campaign_key_it_does_not_read_or_a_budget_of_zero_is_refused_naming_the_field(tmp_path):
    """The shipped campaign loads; each edit a user could make by mistake is one coded line naming the field,
    where it was dropped (a typo of promote_if, an unknown key), fell back to the study's budget (trials: 0) or
    crashed the validation (seeds: 0)."""
    shipped = (REPO / "studies" / "campaign.yaml").read_text()
    assert load_campaign(REPO / "studies" / "campaign.yaml")["steps"]
    edits = {
        "promote_iff": (("promote_if: {min_J: 0.0, targets: true}", "promote_iff: {min_J: 0.0, targets: true}"),
                        "steps[3]: Additional properties are not allowed ('promote_iff' was unexpected)"),
        "top-level key": (("campaign: 3A-remediation", "campaign: 3A-remediation\nfrobnicate: 2"), "'frobnicate'"),
        "step key": (("{phase: P0, baseline: {seed: 42}}", "{phase: P0, baseline: {seed: 42}, frobnicate: 1}"),
                     "steps[1]: Additional"),
        "validation seeds": (("validate: {seeds: 16, top: 5,", "validate: {seeds: 0, top: 5,"),
                             "validate.seeds: 0 is less than the minimum of 1"),
        "sweep budget": (("sweep: {study: P1.2, trials: 40}", "sweep: {study: P1.2, trials: 0}"),
                         "steps[3].sweep.trials: 0 is less than the minimum of 1"),
        "selection rule": (("select: pareto_min_second", "select: pareto"), "steps[3].select: 'pareto' is not one of"),
        "duplicate key": (("campaign: 3A-remediation", "campaign: 3A-remediation\ncampaign: again"), "duplicate key"),
        "NaN": (("promote_if: {min_J: 0.0, targets: true}", "promote_if: {min_J: .nan, targets: true}"),
                "steps[3].promote_if.min_J: number is not finite"),
        # counts that would run for hours (a typo) are bounded as the command line bounds them
        "validation seeds, a typo": (("validate: {seeds: 16, top: 5,", "validate: {seeds: 1000000000, top: 5,"),
                                     "validate.seeds: 1000000000 is greater than the maximum of 10000"),
        # a reason is filled in only when its step runs, after earlier steps changed the authority: checked now
        "unknown fact": (("{population_top1_median:", "{no_such_fact:"),
                         "reason: unknown fact {no_such_fact}; the facts are"),
        "unclosed brace": (("{population_top1_median:", "{population_top1_median"), "reason: not a reason template"),
        "small world without its size": (("small_world: {max_pairs: 20000, ", "small_world: {"),
                                         "validate.small_world: 'max_pairs' is a required property"),
        # a campaign that freezes certifies the plan's seedpack: a freeze refuses fewer seeds (their spread is not
        # the seedpack's), so it is refused here, not after hours of sweeps
        "partial seedpack": (("certify: {seeds: [42, 7, 101, 202], holdout: 200}", "certify: {seeds: [42], holdout: 200}"),
                             "certify.seeds: a campaign that freezes certifies the plan's seedpack (42,7,101,202); "
                             "missing 7,101,202"),
        "small world, a typo": (("small_world: {max_pairs: 20000, ", "small_world: {max_pair: 20000, "),
                                "validate.small_world: Additional properties are not allowed ('max_pair'"),
        "phase": (("{phase: P0, baseline: {seed: 42}}", "{phase: P77, baseline: {seed: 42}}"),
                  "steps[1].phase: 'P77' is not one of"),
    }
    for name, ((old, new), msg) in edits.items():
        assert shipped.count(old) >= 1, name
        bad = tmp_path / "c.yaml"
        bad.write_text(shipped.replace(old, new, 1))
        with pytest.raises(EngineError) as err:
            load_campaign(bad)
        assert err.value.code == "E3A_TUN_060_CAMPAIGN" and msg in str(err.value), (name, str(err.value))
    bad.write_text("steps:\n  - {phase: P2, sweep: {study: P2}}\n")
    with pytest.raises(EngineError, match="steps\\[0\\]: 'decision' is a required property"):
        load_campaign(bad)


def test_selection_rules():
    from tuning.study.trial_row import TrialRow

    rows = [TrialRow(trial=n, J=j, second=s, target_pass=t, feasible=f) for n, j, s, t, f in
            [(1, 0.2, 0.01, True, True), (2, 0.4, 0.02, False, True), (3, 0.1, 0.005, True, True),
             (4, 0.9, 0.001, True, False), (5, -0.1, 0.004, True, True)]]
    assert choose(rows, "best_feasible", None)[0].trial == 2          # vetoed trial 4 never wins
    assert choose(rows, "best_feasible", 0.0, require_targets=True)[0].trial == 1
    pick, why = choose(rows, "pareto_min_second", None, on_front={2, 5})
    assert pick.trial == 5 and "trial 5" in why and "on the sweep's feasible front" in why
    assert choose(rows, "pareto_min_second", 0.0)[0].trial == 3       # J floor drops trial 5
    assert choose(rows, "pareto_min_second", 0.15, require_targets=True)[0].trial == 1
    pick, why = choose(rows, "pareto_min_second", 0.5)
    assert pick is None and "no feasible trial" in why
    with pytest.raises(EngineError):
        choose(rows, "nonsense", 0.0)


@pytest.mark.slow
def test_run_then_replay_ends_on_identical_policies_and_rebuilds_the_trail(project, capsys):
    """run; the authority committed and changed since, a replay compares with git HEAD and ends on it; a replay
    whose end differs from the committed authority is refused (without git: test_replay_without_git_...)."""
    from tuning.campaign.__main__ import main
    from tuning.authority.ladder_steps import read_ladder
    studies = project / "studies"
    (studies / "P1.2.yaml").write_text(MINI_P12)
    (studies / "P2.yaml").write_text(MINI_P2)
    (project / "campaign.yaml").write_text(CAMPAIGN)
    assert not (project / "runs").exists() and not (project / "reports").exists()
    frozen = (project / "policies" / "ladder.yaml").read_bytes()
    with pytest.raises(EngineError) as err:   # the committed authority is frozen: re-authoring it is a decision
        main(["run", "--file", "campaign.yaml", "--no-progress"])
    assert err.value.code == "E3A_TUN_024_AUTHORITY_FROZEN" and "--reopen REASON" in str(err.value)
    assert (project / "policies" / "ladder.yaml").read_bytes() == frozen
    assert main(["run", "--file", "campaign.yaml", "--no-progress", "--json", "--runs-root", "out/runs",
                 "--reports", "out/packs", "--reopen", "the test campaign again"]) == 0
    captured = capsys.readouterr()
    first = json.loads(captured.out)   # --json: stdout is the JSON alone
    # no bar: one line a step on stderr, in order, with its outcome
    said = [line for line in captured.err.splitlines() if line.startswith("campaign: step ")]
    n = len(first["steps"])
    assert said == [f"campaign: step {i}/{n} {s['phase']}: {s['outcome']} ({s['seconds']:.1f} s)"
                    for i, s in enumerate(first["steps"], 1)], captured.err[-800:]
    assert "reopened a frozen authority: the test campaign again" in read_ladder(project / "policies")[0]["note"]
    # the P0 step's run and pack go where the campaign was told, not into the working directory's runs/, reports/
    assert not (project / "runs").exists() and not (project / "reports").exists()
    assert list((project / "out" / "packs").glob("*.json")) and list((project / "out" / "runs").iterdir())
    by_phase = {s["phase"]: s for s in first["steps"]}
    # where each step's time went: a sweep step's parts, P5's seedpack and held-out seeds, within its seconds
    assert "sweep" in by_phase["P1.2"]["parts"] and set(by_phase["P5"]["parts"]) == {"seedpack", "holdout"}
    for step in first["steps"]:   # each figure rounded to 0.01 s: the parts' sum may pass it by half a unit each
        parts = step.get("parts", {})
        assert sum(parts.values()) <= step["seconds"] + 0.005 * (len(parts) + 1) + 1e-9, step
    # the P2 sweep's anchor is the authority on seed 42, which the P1.2 step scored (its trial or its anchor)
    assert by_phase["P2"]["scores_reused"] >= 1 and "scores_reused" not in by_phase["P0"]
    ladder = read_ladder(project / "policies")
    assert [s["phase"] for s in ladder][:4] == ["AUTHOR", "P0", "P1.2", "P2"] and ladder[-1]["phase"] == "P6"
    assert any(s["decision"] == "P2_REVIEWED" and s.get("note") == "a recorded review" for s in ladder)
    digests = PolicySet.from_dir(project / "policies").digests
    # the campaign's policies committed, then changed (a promotion, an edit): that does not make a replay fail, it
    # compares with git HEAD, says so, and ends on the committed policies with the same outcome at every step
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(git + ["init", "-q"], cwd=project, check=True)
    subprocess.run(git + ["add", "policies"], cwd=project, check=True)
    subprocess.run(git + ["commit", "-qm", "authority"], cwd=project, check=True)
    mixture = project / "policies" / "zone_mixture_policy.yaml"
    text = mixture.read_text()
    assert "theta_mix: 0.35" in text
    mixture.write_text(text.replace("theta_mix: 0.35", "theta_mix: 0.36"))   # the authority changed since
    assert main(["replay", "--file", "campaign.yaml", "--no-progress", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["replay_identical"] is True and second["compared_with"] == "git HEAD"
    assert second["digests"] == first["digests"] == dict(digests) == \
        dict(PolicySet.from_dir(project / "policies").digests)
    assert [s["outcome"] for s in second["steps"]] == [s["outcome"] for s in first["steps"]]
    # a replay whose end differs from the committed authority is a coded failure
    (studies / "P2.yaml").write_text(MINI_P2.replace("seed: 6", "seed: 99").replace("high: 1.0}", "high: 0.9}", 1))
    with pytest.raises(EngineError) as err:
        main(["replay", "--file", "campaign.yaml", "--no-progress", "--json"])
    assert err.value.code == "E3A_TUN_061_REPLAY_MISMATCH"
    # a replay runs in place: the message says what the folder holds now, and where the committed files are
    assert err.value.cause.endswith("policies and its records now hold the replay's end, the committed files are "
                                    "git HEAD's"), err.value.cause


def test_replay_without_git_compares_with_the_folder_as_it_was_when_it_started(tmp_path):
    import shutil

    from tuning.campaign.__main__ import committed_digests

    folder = tmp_path / "authority"   # outside any git work tree
    shutil.copytree(REPO / "policies", folder)
    assert committed_digests(folder) == (dict(PolicySet.from_dir(folder).digests), "the folder when replay started")
    assert committed_digests(tmp_path / "none") == (None, "none")


MINI_FRONTIER = """
phase: P2
study: c-P2.frontier
base_policies: policies
seeds: [42]
trials: 4
sampler: {name: tpe, seed: 8, n_startup_trials: 4, multivariate: true}
knobs:
  - {name: concentration_scale, low: 0.2, high: 0.6}
  - {name: site_elasticity, low: 0.8, high: 1.3}
  - {name: min_second_zone_share, low: 0.0, high: 0.2}
  - {name: max_forced_zones, value: 1}
objective:
  name: J_frontier
  terms:
    - {name: d_s3_std, metric: s3.merchant_share_std_median, direction: up, weight: 1.0}
  second: {name: s4_top1_p75, metric: s4.top1_share_p75, direction: minimize}
vetoes:
  structural: [s6_pass, s7_pass, conservation, schema, realism_floors, fidelity]
  guardrails:
    - {name: 3A-S04 S3 std >= 0.02, metric: s3.merchant_share_std_median, op: ">=", value: 0.02, reason: S3_STD_TARGET}
targets:
  - {name: S3 std >= 0.02, metric: s3.merchant_share_std_median, op: ">=", value: 0.02}
"""
WORLD_CAMPAIGN = """
campaign: mini-world
validate: {seeds: 2, top: 2}
steps:
  - {author: true}
  - {phase: P0, baseline: {seed: 42}}
  - {phase: P2, frontier: {study: P2.frontier}, reachable: REACHABLE, unreachable: UNREACHABLE, narrow: [P2],
     reason: "frontier on {world}: {multi_clock_pair_share:.2f} of pairs in multi-clock countries;"}
  - {phase: P2, sweep: {study: P2, name: c-P2}, select: best_feasible, promote_if: {min_J: 0.0},
     decision: UNLOCK_P3, else: HOLD_P2}
  - {phase: P5, certify: {seeds: [42, 7, 101, 202], holdout: 2}}
  - {phase: P6, freeze: {target: PASS_BPLUS}}
"""


@pytest.mark.slow
def test_a_campaign_runs_on_a_world_of_its_own_and_leaves_a_users_sweep_alone(project, capsys):
    """The same campaign machinery on another world: its own authority folder bound to that world, every ladder
    step carrying the world, reasons quoting the world's facts, the frontier's computed review narrowing P2. A
    user's own sweep (same study name, default world) keeps its journal, runs and ranking through the campaign."""
    import hashlib

    import pandas as pd

    from tests.worlds.build import write_world
    from tuning.author import main as author
    from tuning.common import worlds
    from tuning.campaign.__main__ import main
    from tuning.authority.ladder_steps import read_ladder
    from tuning.rank import ranked_runs
    from tuning.sweep.__main__ import main as sweep

    studies = project / "studies"
    (studies / "P2.yaml").write_text(MINI_P2)
    (studies / "P2.frontier.yaml").write_text(MINI_FRONTIER)
    (project / "campaign.yaml").write_text(WORLD_CAMPAIGN)
    world = project / "local"
    write_world("small_local", world, seed=11)
    frame = pd.read_parquet(world / "outlets.parquet")
    frame[frame["merchant_id"] % 3 == 0].to_parquet(world / "outlets.parquet", index=False)
    assert sweep(["--phase", "P1.2", "--trials", "3", "--no-progress", "--json"]) == 0   # the user's own sweep
    journal = project / ".optuna" / "t-P1.2.journal"
    before = hashlib.sha256(journal.read_bytes()).hexdigest(), [(r.trial, r.mlflow_run_id) for r in ranked_runs("P1.2")]
    # the README's sequence: the world's folder authored first, then the campaign re-authors it on its world
    assert author(["--world", str(world), "--into", "auth"]) == 0
    capsys.readouterr()
    assert main(["run", "--file", "campaign.yaml", "--world", str(world), "--policies", "auth", "--no-progress",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    w = worlds.load(world)
    ladder = read_ladder(project / "auth")
    assert out["world"]["fingerprint"] == w.fingerprint and {s["world"] for s in ladder} == {w.fingerprint}
    frontier = next(s for s in ladder if s["decision"] in ("REACHABLE", "UNREACHABLE"))
    assert frontier["note"].startswith(f"frontier on {w.name}: ") and "multi-clock countries" in frontier["note"]
    if frontier["decision"] == "REACHABLE":
        assert any(s["decision"] == "SPACES_NARROWED" and "P2: " in s["note"] for s in ladder)
    assert ladder[-1]["phase"] == "P6" and ladder[-1]["decision"].startswith("FROZEN_")
    assert PolicySet.from_dir(project / "policies").parameter_hash   # the default world's authority untouched
    after = hashlib.sha256(journal.read_bytes()).hexdigest(), [(r.trial, r.mlflow_run_id) for r in ranked_runs("P1.2")]
    assert after == before    # the campaign's own studies are named apart: nothing of the user's moved
    from tuning.campaign.steps import folder_scope

    scope = folder_scope(project / "auth", w)   # the folder's own identity names its campaign's studies
    assert scope and (project / ".optuna" / f"campaign-{scope}c-P2-{w.label}.journal").exists()
