"""The campaign's choices (issue 8 item 6): the P2 frontier's reachability and narrowing, selection by what holds on
validation seeds, the world facts a reason quotes, held-out seeds, a DISTORTED authority giving way, and a small
world's validation block."""

from __future__ import annotations

import pytest

from tests.tuning.conftest import REPO


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


def test_validation_scores_on_the_sweeps_own_chain_cache(monkeypatch):
    """Validation re-scores candidates on the sweep's chain cache: a second cache beside it, budgeted as the process's
    only one, held up to two thirds of the memory (helper 55: 13 GB at a 1 M-pair campaign's P3 validation)."""
    from types import SimpleNamespace

    import tuning.study.objective as objective_module
    from engine import PolicySet, default_world
    from tuning.campaign.validation import validation_rates
    from tuning.study.cache_budget import chain_cache
    from tuning.study.spec import load_study

    cache = chain_cache(8)
    sweep = SimpleNamespace(spec=load_study("P2", REPO / "studies"), base=PolicySet.from_dir(REPO / "policies"),
                            world=default_world(), objective=SimpleNamespace(cache=cache),
                            config=SimpleNamespace(studies_dir=REPO / "studies"))

    def no_second_cache(*args, **kwargs):
        raise AssertionError("validation made a chain cache of its own")

    monkeypatch.setattr(objective_module, "chain_cache", no_second_cache)
    rates, anchor = validation_rates(sweep, [], 3)
    assert rates == {} and 0.0 <= anchor[0] <= 1.0
    assert len(cache) > 0 and cache.max_entries == 64 * 3      # the sweep's cache holds the validation seeds' states
