"""Multi-fidelity search (tuning.study.fidelity): stages from the world's size, successive halving with the merchant
fraction as the budget, pruned trials recorded honestly, full-scale witness/promotion/certification."""

from __future__ import annotations

import inspect
import json

import optuna
import pytest
import yaml

from engine.core.errors import EngineError
from tests.tuning.conftest import REPO, make_project, run_here, run_module, seed_store
from tuning.study import fidelity
from tuning.study.spec import load_study, parse_study


def _p3(**fid) -> dict:
    doc = yaml.safe_load((REPO / "studies" / "P3.yaml").read_text())
    if fid:
        doc["fidelity"] = fid
    return doc


def test_small_worlds_and_two_objective_studies_keep_one_stage():
    spec = parse_study(_p3(), "studies/P3.yaml")
    assert spec.fidelity is None
    assert fidelity.stages(spec, 2_606) == (1.0,)                      # the default world: today's single stage
    assert fidelity.stages(spec, 200_000) == (1.0,)                    # 25 k pairs would take more than 0.1 of it
    assert fidelity.stages(spec, 250_000) == (0.1, 1.0)                # the default schedule from 250 k pairs
    assert fidelity.stages(spec, 380_082) == (0.066, 1.0)              # about 25 k pairs, rounded up to a step
    assert fidelity.stages(spec, 10 ** 7) == (0.003, 1.0)
    explicit = parse_study(_p3(fractions=[0.05, 0.2, 1.0], min_pairs=0), "studies/P3.yaml")
    assert fidelity.stages(explicit, 10) == (0.05, 0.2, 1.0)
    assert fidelity.stages(parse_study(_p3(fractions=[1.0]), "studies/P3.yaml"), 10 ** 6) == (1.0,)
    two = load_study("P1.2", REPO / "studies")
    assert two.multi_objective and fidelity.stages(two, 10 ** 6) == (1.0,)
    assert fidelity.pruner(spec, (1.0,)) is None
    sha = fidelity.pruner(spec, (0.1, 1.0))
    assert isinstance(sha, optuna.pruners.SuccessiveHalvingPruner) and fidelity.step(0.1) == 100


def test_the_first_stage_keeps_about_search_pairs_pairs_where_that_is_within_its_fraction():
    spec = parse_study(_p3(fractions=[0.2, 0.5, 1.0], search_pairs=30_000), "studies/P3.yaml")
    assert fidelity.stages(spec, 100_000) == (1.0,)                    # 30 k of 100 k is above the first fraction
    assert fidelity.stages(spec, 150_000) == (0.2, 0.5, 1.0)
    assert fidelity.stages(spec, 400_000) == (0.075, 0.5, 1.0)
    assert fidelity.stages(spec, 7_000_000) == (0.005, 0.5, 1.0)       # 0.00429 rounded up to a step
    assert fidelity.stages(spec, 10 ** 9) == (0.001, 0.5, 1.0)         # one step at least
    for pairs in (150_000, 150_001, 299_999, 123_457_891):            # the fraction kept covers search_pairs
        first = fidelity.stages(spec, pairs)[0]
        assert first * pairs >= 30_000 - 1e-6 and first - 0.001 < max(30_000 / pairs, 0.001)
    assert fidelity.stages(parse_study(_p3(fractions=[0.2, 1.0], search_pairs=30_000, min_pairs=10 ** 6),
                                       "studies/P3.yaml"), 500_000) == (1.0,)
    with pytest.raises(EngineError) as err:
        parse_study(_p3(fractions=[0.1, 1.0], search_pairs=0), "studies/P3.yaml")
    assert err.value.code == "E3A_TUN_010_STUDY_INVALID" and "search_pairs" in err.value.cause


@pytest.mark.parametrize("fractions", [[0.1, 0.5], [0.5, 0.2, 1.0], [0, 1.0], [1.5], []])
def test_a_bad_schedule_is_a_coded_study_error(fractions):
    with pytest.raises(EngineError) as err:
        parse_study(_p3(fractions=fractions), "studies/P3.yaml")
    assert err.value.code == "E3A_TUN_010_STUDY_INVALID" and "fidelity" in err.value.cause


def test_witness_promotion_and_certification_score_at_full_scale():
    from tuning.authority import certification, holdout, promotion, witness
    from tuning.study import objective

    for cls in (objective.SeedRobustObjective, objective.PhaseObjective):
        assert inspect.signature(cls).parameters["fraction"].default == 1.0
    for mod in (witness, promotion, certification, holdout):
        assert "fraction" not in inspect.getsource(mod)


def test_a_multi_fidelity_sweep_prunes_on_the_subsample_and_records_it(tmp_path):
    root = make_project(tmp_path / "proj")
    seed_store(root)
    doc = _p3(fractions=[0.2, 1.0], reduction_factor=3, min_pairs=0)
    doc.update(trials=6, study="t-P3f")
    (root / "studies" / "P3.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    out = run_here(root, "tuning.sweep", "--phase", "P3", "--force", "--no-progress", "--json", "--reports", "0")
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(root / ".optuna" / "t-P3f.journal")))
    trials = optuna.load_study(study_name="t-P3f", storage=storage).trials
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == 6 and "PRUNED" in states
    assert summary["trials_complete"] == states.count("COMPLETE")
    # the shipped P3 precheck closes on the default world: --force ran the trials, so its finding is no decision
    assert "decision" not in summary and summary["precheck"] == "P3_NOOP_LOCK: no trigger fired; --force ran the trials"
    for t in trials:
        fid = t.user_attrs["fidelity"]
        assert list(t.intermediate_values) == [200] and fid["search"][0]["fraction"] == 0.2
        assert fid["fraction"] == (0.2 if t.state.name == "PRUNED" else 1.0)
        if t.state.name == "PRUNED":
            assert "PRUNED" in t.user_attrs["result"]["veto_reasons"] and t.user_attrs["result"]["veto"] != "PASS"
    assert all(row["trial"] in {t.number for t in trials if t.state.name == "COMPLETE"} for row in summary["top"])


def test_the_workers_progress_bar_counts_the_budget_as_the_sweep_does(tmp_path):
    """A multi-fidelity budget is its candidates, PRUNED ones included: under --workers the bar ends at the budget
    (it counted COMPLETE trials only and ended at 2/6)."""
    import re

    root = make_project(tmp_path / "proj")
    seed_store(root)
    doc = _p3(fractions=[0.2, 1.0], reduction_factor=3, min_pairs=0)
    doc.update(trials=6, study="t-P3w")
    (root / "studies" / "P3.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    out = run_module(root, "tuning.sweep", "--phase", "P3", "--force", "--json", "--reports", "0", "--workers", "2")
    assert out.returncode == 0, out.stderr[-2000:]
    shown = re.findall(r"\| (\d+)/6 \[", out.stderr)
    assert shown and shown[-1] == "6", out.stderr[-1500:]


def test_a_world_suffix_is_added_once():
    """A --workers process is handed the coordinator's (already suffixed) study name: it must open that study."""
    from types import SimpleNamespace

    from tuning.common import worlds

    world = SimpleNamespace(label="wabc123def456", fingerprint="x")
    once = worlds.suffixed("3A-P3", world)
    assert once == "3A-P3-wabc123def456" and worlds.suffixed(once, world) == once


def test_a_sweep_its_precheck_closes_says_so_and_how_to_run_the_trials_anyway(tmp_path):
    """Without --force the shipped P3 precheck closes on the default world: the sweep says that no trial ran, why,
    where the decision is recorded and that --force runs them, instead of an empty table (a user at 1 M pairs waited
    43 s for "decision: P3_NOOP_LOCK" and a table of nothing)."""
    root = make_project(tmp_path / "proj")
    seed_store(root)
    doc = _p3()
    doc.update(trials=2, study="t-P3p", seeds=[42])
    (root / "studies" / "P3.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    out = run_here(root, "tuning.sweep", "--phase", "P3", "--no-progress")
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-2] == "decision: P3_NOOP_LOCK" and lines[-1].startswith("precheck: no collapse-risk trigger fired")
    assert "(seeds 42; " in lines[-1]
    assert "recorded in the ladder of policies/; --force runs the trials anyway" in lines[-1]
    assert "0 complete, 0 pruned" in lines[0] and "| trial |" not in out.stdout   # no empty table
