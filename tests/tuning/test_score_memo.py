"""Scores shared across a campaign's steps (tuning.study.score_memo): a hit is the score a fresh chain gives,
the key tells apart everything a score depends on, and what must re-run (a witness replay) re-runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine.policies import PolicySet
from tests.tuning.test_seed_robust import ROBUST
from tuning.study.objective import PhaseObjective, SeedRobustObjective
from tuning.study.score_memo import ScoreMemo, active, score_key, shared_scores
from tuning.study.spec import parse_study

KNOBS = {"blend_lambda": 0.07, "hub_cap": 1.0, "tail_gamma": 1.0}


@pytest.fixture(scope="module")
def spec():
    return parse_study(yaml.safe_load(ROBUST), "robust.yaml")


@pytest.fixture(scope="module")
def base():
    return PolicySet.from_dir(Path(__file__).resolve().parents[2] / "policies")


def scored(ev) -> tuple:
    return (ev.value, ev.seed_values, ev.vetoes, ev.constraints, ev.targets, ev.verdict, ev.fidelity, ev.second_value,
            ev.pack, ev.gates, ev.identity, ev.floors, ev.s6_status, ev.s7_status)


def test_a_second_objective_reuses_the_first_ones_scores_and_scores_alike(spec, base):
    fresh = SeedRobustObjective(spec, [42, 7], base).evaluate(KNOBS)   # outside the block: nothing shared
    assert active() is None and "scores" not in fresh.reused
    with shared_scores() as memo:
        first = SeedRobustObjective(spec, [42, 7], base).evaluate(KNOBS)
        assert (memo.hits, len(memo)) == (0, 4)   # the anchors and the candidate, on each seed
        again = SeedRobustObjective(spec, [42, 7], base)   # another step's objective: its anchors and candidate
        second = again.evaluate(KNOBS)
        assert memo.hits == 4 and second.reused == ["scores"] and all(e.reused == ["scores"] for e in second.per_seed)
        assert scored(second) == scored(first) == scored(fresh)
        # a hit is the caller's own copy: scoring it (or mutating it) never reaches into the memo
        second.per_seed[0].pack["s2"]["pairs_total"] = -1
        assert SeedRobustObjective(spec, [42, 7], base).evaluate(KNOBS).pack == fresh.pack
    assert active() is None


def test_the_key_tells_apart_world_seed_fraction_and_policy_bytes(base):
    from engine.world.model import default_world
    from tuning.study.knobs import apply_knobs

    other = apply_knobs(base, {"blend_lambda": 0.03})
    key = score_key(None, 42, 1.0, base)
    assert key == score_key(default_world(), 42, 1.0, PolicySet.from_dir(Path(__file__).resolve().parents[2] / "policies"))
    assert len({key, score_key(None, 7, 1.0, base), score_key(None, 42, 0.5, base), score_key(None, 42, 1.0, other)}) == 4


def test_a_replay_and_a_published_run_rerun_their_chain(spec, base, tmp_path):
    with shared_scores() as memo:
        obj = PhaseObjective(spec, 42, base)
        obj.evaluate({})                      # the base as a candidate: the anchor's score is reused
        assert memo.hits == 1
        replayed = obj.replay(base)           # a witness replays: never from the memo
        published = obj.evaluate({}, run_root=tmp_path / "runs")
        assert memo.hits == 1 and "scores" not in replayed.reused and "scores" not in published.reused
        assert replayed.pack == obj.anchor.pack == published.pack


def test_the_memo_is_bounded_and_forgets_the_least_recently_used():
    class Ev:
        def __init__(self, i):
            self.identity, self.pack, self.gates, self.verdict, self.fidelity = {"i": i}, {"i": i}, {}, "x", "y"
            self.s6_status = self.s7_status = "PASS"
            self.floors, self.fraction, self.outlets = None, 1.0, None

    memo = ScoreMemo(entries=2)
    memo.put(("a",), Ev(1))
    memo.put(("b",), Ev(2))
    assert memo.get(("a",))["pack"] == {"i": 1}   # "a" is now the most recent
    memo.put(("c",), Ev(3))
    assert memo.get(("b",)) is None and memo.get(("a",)) is not None and len(memo) == 2
    failed = Ev(4)
    failed.pack = None                             # a chain that did not run is not remembered
    memo.put(("d",), failed)
    assert memo.get(("d",)) is None and (memo.hits, memo.misses) == (2, 2)
