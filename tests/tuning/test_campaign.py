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


def test_frontier_rules_reachability_region_and_narrowing():
    from tuning.campaign.rules import narrow, reachability, region
    from tuning.study.spec import KnobSpace, load_study
    from tuning.study.trial_row import TrialRow

    targets = {"S3_STD_TARGET": "std", "S4_TARGET": "p75"}
    rows = [TrialRow(trial=n, J=j, feasible=not v, vetoes=v, target_pass=not v, knobs={"concentration_scale": c})
            for n, j, v, c in [(0, 0.1, (), 0.3), (1, 0.2, ("S4_TARGET",), 0.9), (2, 0.3, ("FIDELITY_DISTORTED",), 0.1),
                               (3, 0.1, (), 0.5)]]
    proof = reachability(rows, targets)
    assert [r.trial for r in proof["meets"]] == [0, 3] and proof["faithful"] == 3 and proof["blocking"] == []
    assert proof["per_target"] == {"std": 3, "p75": 2}
    none = reachability([r.with_(vetoes=("S4_TARGET",), feasible=False) for r in rows[:2]], targets)
    assert none["meets"] == [] and none["blocking"] == ["p75"]     # no faithful trial ever met the S4 target
    # no trial faithful and sound (an authoring floor a faithful prior cannot meet, fidelity): no target is named
    # blocking, for none was measured on such a trial; the vetoes that stopped them are counted instead
    stopped = reachability([r.with_(vetoes=("REALISM_FLOOR_FAIL",) + (("S4_TARGET",) if r.trial % 2 else ()),
                                    feasible=False) for r in rows] + [rows[2]], targets)
    assert stopped["faithful"] == 0 and stopped["blocking"] == [] and stopped["meets"] == []
    assert stopped["vetoed_by"] == {"REALISM_FLOOR_FAIL": 4, "FIDELITY_DISTORTED": 1}
    spaces = (KnobSpace("concentration_scale", low=0.05, high=1.0), KnobSpace("merchant_jitter", low=0.0, high=0.5))
    found = region(proof["meets"], spaces)
    assert found == {"concentration_scale": {"low": 0.3, "high": 0.5}}
    spec = narrow(load_study("P2", "studies"), found)
    knob = next(k for k in spec.knobs if k.name == "concentration_scale")
    assert knob.low == pytest.approx(0.3 - 0.15 * 0.95) and knob.high == pytest.approx(0.5 + 0.15 * 0.95)
    jitter = next(k for k in spec.knobs if k.name == "merchant_jitter")
    assert (jitter.low, jitter.high) == (0.0, 0.5)    # the frontier found nothing on it: its space stays


def test_validated_selection_prefers_what_holds_off_the_tuning_seeds():
    from tuning.campaign.rules import validated

    from tuning.study.trial_row import TrialRow

    ranked = [TrialRow(trial=n, J=0.1, feasible=True) for n in (7, 3, 5)]
    pick, why = validated(ranked, {7: (0.75, 0.5, 4.0), 3: (1.0, 0.9, 1.0), 5: (1.0, 0.9, 2.0)})
    assert pick.trial == 5 and "trial 5 holds on 100%" in why and "trial 7: 75%" in why
    pick, _ = validated(ranked, {7: (1.0, 0.9, 2.0), 3: (1.0, 0.9, 2.0)})
    assert pick.trial == 7            # a full tie goes to the rule's order
    # best_feasible: steadiness before the goal share (before the last phase, the goal counts gates a later phase
    # settles); the goal share breaks a tie of steadiness
    assert validated(ranked, {7: (1.0, 0.31, 1.9), 3: (1.0, 0.0, 2.8)})[0].trial == 3
    assert validated(ranked, {7: (1.0, 0.31, 2.8), 3: (1.0, 0.0, 2.8)})[0].trial == 7
    # the faithful rule: among candidates that hold as well, its order (the most faithful first), not steadiness
    scores = {7: (1.0, 0.0, 0.01), 3: (1.0, 0.0, 0.16), 5: (0.9, 0.0, 0.3)}
    assert validated(ranked, scores, "pareto_min_second")[0].trial == 7
    assert validated(ranked, scores, "best_feasible")[0].trial == 3
    assert validated(ranked, {7: (0.9, 0.0, 0.01), 3: (1.0, 0.0, 0.0)}, "pareto_min_second")[0].trial == 3


def test_the_facts_quote_what_the_gates_measure_and_what_s1_can_reach(tmp_path):
    """DE's universe file lists Busingen, where nobody lives: it is left out of Z(c), so DE is a one-zone country
    the top-1 gates do not count, and the population's own top-1 median the reasons quote is the US's alone (0.8,
    above the B+ ceiling 0.75). A pair of one outlet is never split: of the 2 pairs in the multi-zone country, 1
    can escalate."""
    import pandas as pd

    from engine import load_world
    from tuning.campaign.facts import world_facts

    pd.DataFrame({"country_iso": ["US", "US", "DE", "DE", "FR"],
                  "tzid": ["America/New_York", "America/Chicago", "Europe/Berlin", "Europe/Busingen",
                           "Europe/Paris"]}).to_csv(tmp_path / "universe.csv", index=False)
    pd.DataFrame({"country_iso": ["US", "US", "DE", "FR"],
                  "tzid": ["America/New_York", "America/Chicago", "Europe/Berlin", "Europe/Paris"],
                  "population": [80e6, 20e6, 80e6, 65e6]}).to_csv(tmp_path / "population.csv", index=False)
    pd.DataFrame({"merchant_id": [1, 2, 3, 4], "legal_country_iso": ["US", "US", "DE", "FR"],
                  "site_count": [5, 1, 3, 2]}).to_csv(tmp_path / "outlets.csv", index=False)
    world = load_world(tmp_path)
    assert world.left_out_zones == (("DE", "Europe/Busingen"),)
    facts = world_facts(world)
    assert facts["population_top1_median"] == pytest.approx(0.8) and facts["s2_bplus_vs_population"] == "below"
    assert (facts["multi_clock_pair_share"], facts["escalable_pair_share"]) == (0.5, 0.25)
    assert facts["s1_corridor_reach"] == "unreachable"   # 0.25 < 0.55


def test_the_facts_a_reason_may_quote_are_the_facts_a_world_has():
    """The template check's names and kinds are world_facts' own (the default world's, as any world's)."""
    from engine import default_world
    from tuning.campaign.facts import FACT_KINDS, world_facts

    facts = world_facts(default_world())
    assert {k: type(v) for k, v in facts.items()} == {k: type(v) for k, v in FACT_KINDS.items()}


def test_held_out_seeds_are_drawn_in_linear_time_and_unchanged():
    from tuning.authority.holdout import holdout_seeds, tuning_seeds

    many = holdout_seeds(10_000, tuning_seeds())     # a list scan per draw took minutes at this size
    assert len(set(many)) == 10_000 and many[:3] == holdout_seeds(3, tuning_seeds())


def test_two_folders_of_one_world_keep_their_campaign_studies_apart(project, tmp_path):
    """A campaign into a folder of its own names its studies after the folder: a second folder's campaign of the
    same world (run after it, or beside it) neither deletes the first one's trail nor shares its studies; a
    folder not bound yet has no trail to clear, and the default world's policies/ keeps its names."""
    from engine import default_world, load_world
    from tuning.author import main as author
    from tuning.campaign.__main__ import load_campaign
    from tuning.campaign.steps import folder_scope, fresh_trail, sweep_steps, trail_names
    from tuning.common.errors import invoke

    world_dir = tmp_path / "W"
    world_dir.mkdir()
    rows = ["merchant_id,legal_country_iso,site_count"] + [f"{i},{'US' if i % 2 else 'RU'},{3 + i % 7}"
                                                          for i in range(300)]
    (world_dir / "outlets.csv").write_text("\n".join(rows) + "\n")
    world = load_world(world_dir)
    doc = load_campaign(REPO / "studies" / "campaign.yaml")
    assert folder_scope(project / "X1", world) is None and fresh_trail(doc, REPO / "studies", world, project / "X1") == []
    for folder in ("X1", "X2"):
        assert invoke(author, ["--world", str(world_dir), "--into", str(project / folder)]) == 0
    one, two = folder_scope(project / "X1", world), folder_scope(project / "X2", world)
    assert one != two and one.startswith("a") and len(one) == 14
    names = {f: [trail_names(s, REPO / "studies", world, folder_scope(project / f, world))[0] for s in sweep_steps(doc)]
             for f in ("X1", "X2")}
    assert not set(names["X1"]) & set(names["X2"])
    optuna_dir = project / ".optuna"
    optuna_dir.mkdir(exist_ok=True)
    for study in names["X1"] + names["X2"]:
        (optuna_dir / f"{study}.journal").write_text("")
    assert fresh_trail(doc, REPO / "studies", world, project / "X2", optuna_dir) == names["X2"]
    assert all((optuna_dir / f"{s}.journal").exists() for s in names["X1"])       # the first folder's trail stays
    assert not any((optuna_dir / f"{s}.journal").exists() for s in names["X2"])
    assert folder_scope(REPO / "policies", default_world()) == ""                 # the shipped names: campaign-3A-P2
    # rank --campaign --policies DIR: one folder's campaign of the world's shared experiment
    from types import SimpleNamespace

    from tuning.rank import campaign_of
    from tuning.study.trial_row import TrialRow

    rows = [TrialRow(trial=i, J=0.0, feasible=True, study=f"campaign-{s}3A-P2-{world.label}")
            for i, s in enumerate((one, two, ""))]
    for folder, want in (("X1", [0]), ("X2", [1])):
        args = SimpleNamespace(campaign=True, policies=str(project / folder))
        assert [r.trial for r in campaign_of(rows, args, world)] == want
    with pytest.raises(EngineError) as err:
        campaign_of(rows, SimpleNamespace(campaign=False, policies=str(project / "X1")), world)
    assert err.value.code == "E3A_TUN_050_USAGE" and "use it with --campaign" in err.value.cause
    assert "ranks with --world DIR, without --policies" in err.value.cause   # and how to rank a sweep of one's own
    with pytest.raises(EngineError) as err:   # a folder that is no authority has no campaign of its own
        campaign_of(rows, SimpleNamespace(campaign=True, policies=str(world_dir)), default_world())
    assert err.value.code == "E3A_POL_004_POLICY_MISSING" and "not an authority folder" in err.value.cause
    with pytest.raises(EngineError) as err:   # the default world's policies/ is no folder of this world
        campaign_of(rows, SimpleNamespace(campaign=True, policies=str(project / "policies")), world)
    assert err.value.code == "E3A_TUN_050_USAGE" and "not an authority folder of world" in err.value.cause
    from tuning.rank import main as rank_main

    with pytest.raises(EngineError) as err:   # --policies alone: the folder's world's experiment, not the default's
        rank_main(["--phase", "P2", "--campaign", "--policies", str(project / "X1")])
    assert err.value.code == "E3A_TUN_022_RUN_NOT_FOUND" and world.label in err.value.cause, err.value.cause


def test_a_distorted_authority_gives_way_to_a_faithful_candidate_whatever_its_j():
    """A phase that would promote nothing (no trial above min_J) keeps its authority, unless that authority is
    DISTORTED on a seed of the study: then the best feasible trial (FAITHFUL on every seed, sound) is promoted
    whatever its J (a campaign froze FROZEN_BEST_EFFORT_DISTORTED beside 67 faithful trials of the same grade)."""
    from types import SimpleNamespace

    from tuning.campaign.steps import restore_fidelity
    from tuning.study.trial_row import TrialRow

    def sweep(*fidelities):
        anchors = [SimpleNamespace(seed=s, anchor=SimpleNamespace(fidelity=f))
                   for s, f in zip((42, 7, 101), fidelities)]
        return SimpleNamespace(objective=SimpleNamespace(per_seed=anchors))

    rows = [TrialRow(trial=1, J=-0.02, feasible=False, vetoes=("FIDELITY_DISTORTED",)),
            TrialRow(trial=2, J=-0.01, feasible=True, target_pass=False),
            TrialRow(trial=3, J=-0.03, feasible=True)]
    assert restore_fidelity(sweep("FAITHFUL", "FAITHFUL", "FAITHFUL"), rows, "best_feasible", "no J") == (None, "no J")
    assert restore_fidelity(sweep("NOT_APPLICABLE", "NOT_APPLICABLE"), rows, "best_feasible", "w")[0] is None   # holds
    pick, why = restore_fidelity(sweep("FAITHFUL", "FAITHFUL", "DISTORTED"), rows, "best_feasible", "no J")
    assert pick.trial == 2 and why == ("no J; but the authority is DISTORTED on seeds [101]: trial 2 (J -0.01), "
                                       "faithful and sound on every seed, restores fidelity")
    none, why = restore_fidelity(sweep("DISTORTED", "FAITHFUL", "FAITHFUL"), rows[:1], "best_feasible", "no J")
    assert none is None and why.endswith("the authority is DISTORTED on seeds [42] and no trial is faithful on every "
                                         "seed")
    # faithful trials that a guardrail vetoed are named as such, not as unfaithful (helper 37)
    guarded = rows[:1] + [TrialRow(trial=4, J=0.1, feasible=False, vetoes=("NON_REGRESSION_RAIL_BREACH",)),
                          TrialRow(trial=5, J=0.2, feasible=False,
                                   vetoes=("NON_REGRESSION_RAIL_BREACH", "DOWNSTREAM_CONCENTRATION_REGRESSED"))]
    none, why = restore_fidelity(sweep("DISTORTED", "FAITHFUL", "FAITHFUL"), guarded, "best_feasible", "no J")
    assert none is None and why.endswith(
        "no trial is faithful on every seed and free of vetoes (2 faithful trial(s) vetoed: NON_REGRESSION_RAIL_BREACH 2, "
        "DOWNSTREAM_CONCENTRATION_REGRESSED 1)"), why


def test_re_authoring_a_folder_with_promotions_made_outside_a_campaign_needs_a_reason(tmp_path):
    """A campaign's author step replaces the lineage: a user's own promotion (a sweep of theirs and tuning.promote)
    would survive only as a hash, so, as tuning.author --into asks for --reason, the campaign asks for --reopen;
    the promotions of an earlier, killed run of the campaign are the ones its re-run makes again."""
    import shutil

    import yaml

    from tuning.campaign.__main__ import refuse_re_authoring

    folder = tmp_path / "auth"
    shutil.copytree(REPO / "policies", folder, ignore=shutil.ignore_patterns("lineage.yaml", "ladder.yaml", ".*"))
    doc = {"steps": [{"author": {}}, {"phase": "P1.2", "sweep": {}}]}

    def lineage(*studies: str) -> None:
        entries = [{"decision": "AUTHORED_INSTALL", "parameter_hash": "a"}]
        entries += [{"study": s, "mlflow_run_id": f"run{i}" * 4, "decision": "PROMOTE_TO_P1_3", "parameter_hash": "b"}
                    for i, s in enumerate(studies)]
        (folder / "lineage.yaml").write_text(yaml.safe_dump({"promotions": entries}))

    lineage("campaign-3A-P1.2", "campaign-3A-P2")   # a killed campaign's own: its re-run makes them again
    refuse_re_authoring(folder, doc, None)
    lineage("campaign-3A-P1.2", "3A-P1.2")          # the user's own promotion, after the campaign's
    with pytest.raises(EngineError) as err:
        refuse_re_authoring(folder, doc, None)
    assert err.value.code == "E3A_TUN_050_USAGE" and err.value.cause.startswith(
        f"{folder} holds 1 promotion(s) made outside a campaign (the last: run run1run1run1 of study 3A-P1.2, "
        f"PROMOTE_TO_P1_3)") and "--reopen REASON" in err.value.cause
    refuse_re_authoring(folder, doc, "replace my hand promotion")                  # a stated reason
    refuse_re_authoring(folder, {"steps": [{"phase": "P1.2", "sweep": {}}]}, None)  # no author step: nothing replaced


def test_a_best_effort_freeze_is_kept_from_re_authoring_and_left_open_to_promotion(tmp_path):
    """P6's best-effort freeze is a freeze too for what would replace its ladder: a campaign re-run on the folder
    re-authored it without --reopen (helper 52: a FROZEN_BEST_EFFORT_BELOW_B ladder of 12 steps became 9 of a
    killed re-run). Promotion stays open, as documented: tuning may go on towards the grade."""
    import shutil

    import yaml

    from tuning.authority.guards import frozen_step, guard_promotion
    from tuning.campaign.__main__ import refuse_re_authoring

    folder = tmp_path / "auth"
    shutil.copytree(REPO / "policies", folder, ignore=shutil.ignore_patterns("lineage.yaml", "ladder.yaml", ".*"))
    steps = [dict(s) for s in yaml.safe_load((REPO / "policies" / "ladder.yaml").read_text())["steps"]]
    steps[-1] = {**steps[-1], "decision": "FROZEN_BEST_EFFORT_BELOW_B"}
    (folder / "ladder.yaml").write_text(yaml.safe_dump({"steps": steps}))
    doc = {"steps": [{"author": {}}, {"phase": "P1.2", "sweep": {}}]}
    with pytest.raises(EngineError) as err:
        refuse_re_authoring(folder, doc, None)
    assert err.value.code == "E3A_TUN_024_AUTHORITY_FROZEN" and "FROZEN_BEST_EFFORT_BELOW_B" in err.value.cause
    refuse_re_authoring(folder, doc, "start this world over")
    assert frozen_step(folder) is None and frozen_step(folder, any_freeze=True)["decision"] == steps[-1]["decision"]
    current = PolicySet.from_dir(folder)
    candidate = current.with_documents(zone_mixture_policy={**current.doc("zone_mixture_policy"), "theta_mix": 0.3})
    assert guard_promotion(folder, current, candidate, "r" * 32) is None   # promotable, nothing reopened


def test_the_reopen_reason_is_recorded_with_what_it_reopened(project):
    """The author step records --reopen's reason in the authored baseline's ladder note, naming a frozen authority
    only where the folder was frozen (a folder of one's own promotions is not)."""
    import yaml

    from engine import default_world
    from tuning.authority.ladder_steps import read_ladder
    from tuning.campaign.steps import Campaign

    folder = project / "policies"
    (folder / "ladder.yaml").unlink(missing_ok=True)   # not frozen: its own promotions are what --reopen replaces
    (folder / "lineage.yaml").write_text(yaml.safe_dump({"promotions": [
        {"study": "3A-P1.2", "mlflow_run_id": "r" * 32, "decision": "PROMOTE_TO_P1_3", "parameter_hash": "b"}]}))
    campaign = Campaign({"steps": [{"author": {}}]}, folder, project / "studies", None, default_world(),
                        reopen="replace my hand promotion")
    assert campaign.author() == "authored"
    note = read_ladder(folder)[0]["note"]
    assert note.endswith("; reopened an authority folder: replace my hand promotion"), note


def test_a_small_world_is_validated_on_its_block_s_seeds_and_candidates():
    """``validate.small_world``: a world of at most ``max_pairs`` pairs is validated on its block's seeds and
    candidates (the default world's 2.6 k pairs: 256 and 20), a larger one on the file's (16 and 5); a step's own
    ``validate: false`` has none; the pairs are the catalogue's, counted once."""
    from engine import default_world, outlets_for
    from tuning.campaign.steps import Campaign

    world = default_world()
    pairs = len(outlets_for(world, 42)[["merchant_id", "legal_country_iso"]].drop_duplicates())
    check = {"seeds": 16, "top": 5, "small_world": {"max_pairs": pairs, "seeds": 256, "top": 20}}
    campaign = Campaign({}, REPO / "policies", REPO / "studies", None, world=world)
    assert campaign.pairs == pairs and 2000 < pairs < 20000
    assert campaign.validation(check) == (256, 20)
    assert campaign.validation({**check, "small_world": {**check["small_world"], "max_pairs": pairs - 1}}) == (16, 5)
    assert campaign.validation({"seeds": 16, "top": 5}) == (16, 5)
    assert campaign.validation(False) is None and campaign.validation(None) is None
