"""Promotion's guards that need no store: a trial scored against an earlier authority may not undo what was promoted
since (E3A_TUN_029)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine.core.errors import EngineError
from engine.policies import PolicySet
from tuning.authority.guards import E_UNDOES, guard_base
from tuning.study.knobs import apply_knobs

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def authority() -> PolicySet:
    return PolicySet.from_dir(REPO / "policies")


def test_a_trial_of_an_earlier_authority_may_not_undo_a_later_promotion(authority):
    base = authority
    p3_lock = apply_knobs(base, {"min_second_zone_share": 0.1, "max_forced_zones": 1, "site_threshold": 8})
    p12_trial = apply_knobs(base, {"blend_lambda": 0.05})   # scored against base: the mixture as base had it
    with pytest.raises(EngineError) as err:   # after the P3 lock, installing it would switch the safeguards off
        guard_base("r1", base, p3_lock, p12_trial)
    assert err.value.code == E_UNDOES and "zone_mixture_policy" in err.value.cause
    assert "country_zone_alphas" not in err.value.cause
    guard_base("r2", p3_lock, p3_lock, apply_knobs(p3_lock, {"blend_lambda": 0.05}))   # scored on the current one
    # two candidates of one P1.2 sweep, one after the other: the second replaces the first's alphas, nothing else
    first, second = apply_knobs(base, {"blend_lambda": 0.05}), apply_knobs(base, {"blend_lambda": 0.08})
    guard_base("r3", base, first, second)
    assert yaml.safe_load(second.raw["zone_mixture_policy"]) == yaml.safe_load(first.raw["zone_mixture_policy"])
