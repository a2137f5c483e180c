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


@pytest.mark.parametrize("per_seed, recorded", [
    ({42: "FAITHFUL", 7: "FAITHFUL"}, "FAITHFUL"),
    ({42: "NOT_APPLICABLE", 7: "NOT_APPLICABLE"}, "NOT_APPLICABLE"),   # a world without population evidence
])
def test_a_promotion_records_the_fidelity_its_witness_measured(authority, per_seed, recorded):
    """The lineage entry and the ladder step say what the witness replay measured: on a world without evidence
    NOT_APPLICABLE, never FAITHFUL (both were written as FAITHFUL whatever the world)."""
    from tuning.authority.promotion import _lineage_entry, _promotion_steps

    candidate = apply_knobs(authority, {"blend_lambda": 0.05})
    result = {"engine_run_id": "e" * 32, "seed": 42, "seeds": sorted(per_seed), "J": 0.1, "verdict": "PASS_BPLUS",
              "status": "PASS", "fields_compared": 10, "s6_overall_status": "PASS", "s7_status": "PASS",
              "fidelity": per_seed, "fidelity_verdict": recorded, "faithful": True, "doc": {}, "run_dir": None}
    tags = {"phase": "P1.2", "study": "s", "optuna_trial": "3", "world": "f" * 64, "world_name": "w"}
    entry = _lineage_entry("r" * 32, tags, candidate, authority, None, result, "2026-12-06T00:00:00Z", None, None)
    assert entry["fidelity"] == recorded
    steps = _promotion_steps("r" * 32, tags, entry, candidate, authority, result, "2026-12-06T00:00:00Z", None,
                             None, None)
    assert steps[-1]["kind"] == "ladder" and steps[-1]["evidence"]["fidelity"] == recorded
