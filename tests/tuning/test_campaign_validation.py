"""The validation summary the campaign chooses by (tuning.campaign.validation): per-seed relative margins to every
gate a certification reads, and how steadily a candidate clears what it holds; hand-computed values."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tuning.campaign.validation import STEADY, seed_margins, steadiness


def test_steadiness_is_the_riskiest_moving_gates_mean_over_its_sd():
    # G1: (.1, .3) -> mean .2, sd .1 -> 2.0; G2: (.4, .8) -> mean .6, sd .2 -> 3.0; the riskiest is G1
    assert steadiness([{"G1": 0.1, "G2": 0.4}, {"G1": 0.3, "G2": 0.8}]) == pytest.approx(2.0)


def test_a_gate_that_does_not_move_is_no_risk_however_close():
    # S01 at a margin of .034 on every seed (the priors do not depend on the seed) is not the riskiest: G1 is
    assert steadiness([{"S01": 0.034, "G1": 0.5}, {"S01": 0.034, "G1": 0.7}]) == pytest.approx(6.0)
    assert steadiness([{"S01": 0.034}, {"S01": 0.034}]) == STEADY


def test_a_gate_missed_on_some_seed_is_left_to_the_goal_share():
    assert steadiness([{"G1": 0.5, "G2": -0.1}, {"G1": 0.7, "G2": 0.2}]) == pytest.approx(6.0)


def test_a_failed_seed_or_no_seeds():
    assert steadiness([{"G1": 0.5}, None]) == -1.0
    assert steadiness([]) == -1.0


def test_seed_margins_reads_every_numeric_gate_in_its_direction():
    gates = {"stretch": {"S04": {"value": 0.05, "threshold": 0.04, "op": ">="},      # (.05 - .04) / .04 = .25
                         "S07": {"value": 0.02, "threshold": 0.10, "op": "<="}},     # (.10 - .02) / .10 = .8
             "hard": {"VXX": {"value": True, "threshold": True, "op": "=="}},        # a boolean: no margin
             "fidelity": {"F01": {"value": 0, "threshold": 0, "op": "<="},           # a count at 0: no margin
                          "F07": {"value": 0.006, "threshold": 0.005, "op": "<="}}}  # missed: -.2
    got = seed_margins(SimpleNamespace(pack={"any": 1}, gates=gates))
    assert got == pytest.approx({"S04": 0.25, "S07": 0.8, "F07": -0.2})
    assert seed_margins(SimpleNamespace(pack=None, gates=gates)) is None
