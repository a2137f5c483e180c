"""Seed-robust trials (issue 8 item 4): K seeds per trial on common random numbers; J = mean, any-seed veto,
per-seed intermediate values with a pruner, per-seed MLflow history; multi-objective studies and the
Pareto front (item 5)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from optuna.trial import TrialState

from engine.policies import PolicySet
from tests.tuning.conftest import load, trial_runs
from tuning.study.objective import Evaluation, PhaseObjective, SeedRobustObjective
from tuning.study.pareto import front
from tuning.study.seed_robust import aggregate
from tuning.study.spec import parse_study

import yaml

ROBUST = """
phase: P1.2
study: t-robust
base_policies: policies
seeds: [42, 7]
trials: 4
sampler: {name: tpe, seed: 11, n_startup_trials: 2, multivariate: true}
knobs:
  - {name: blend_lambda, low: 0.0, high: 0.3}
  - {name: hub_cap, value: 1.0}
  - {name: tail_gamma, value: 1.0}
objective:
  name: J
  terms:
    - {name: d_top1, metric: s2.top1_share_median_multi_tz, direction: down, weight: 0.5}
    - {name: d_multi_zone, metric: s4.escalated_multi_zone_rate, direction: up, weight: 0.5}
  second: {name: prior_jsd, metric: fidelity.prior_jsd_mean, direction: minimize}
vetoes:
  structural: [s6_pass, s7_pass, conservation, schema, realism_floors, fidelity]
targets:
  - {metric: s2.top1_share_median_multi_tz, op: "<=", value: 0.76}
"""


def _ev(value, vetoes=(), verdict="PASS_B", fidelity="FAITHFUL", targets=None):
    ev = Evaluation({"k": 1}, None, value=value)
    ev.vetoes = list(vetoes)
    ev.constraints = {v: 1.0 for v in vetoes}
    ev.veto_detail = [f"{v} happened" for v in vetoes]
    ev.verdict, ev.fidelity = verdict, fidelity
    ev.targets = targets or {"t": True}
    ev.deltas = {"d": value}
    ev.pack = {"fidelity": {"prior_jsd_mean": value / 10}}
    return ev


def test_aggregate_mean_any_seed_veto_all_seed_targets_worst_verdicts():
    evs = [_ev(0.3, verdict="PASS_BPLUS"), _ev(0.1, ["FIDELITY_DISTORTED"], "PASS_B", "DISTORTED", {"t": False})]
    agg = aggregate(evs, [42, 7], "fidelity.prior_jsd_mean")
    assert agg.value == pytest.approx(0.2) and agg.deltas == {"d": pytest.approx(0.2)}
    assert agg.seed_values == [0.3, 0.1] and agg.seeds == [42, 7]
    assert agg.vetoes == ["FIDELITY_DISTORTED"] and not agg.feasible
    assert agg.constraints == {"FIDELITY_DISTORTED": 1.0}
    assert agg.veto_detail == ["seed 7: FIDELITY_DISTORTED happened"]
    assert agg.targets == {"t": False}
    assert agg.verdict == "PASS_B" and agg.fidelity == "DISTORTED"
    assert agg.second_value == pytest.approx((0.03 + 0.01) / 2)
    clean = aggregate([_ev(0.3, verdict="PASS_BPLUS"), _ev(0.5, verdict="PASS_BPLUS")], [1, 2], None)
    assert clean.feasible and clean.verdict == "PASS_BPLUS" and clean.fidelity == "FAITHFUL"


def _gated(value, std, rail=True):
    """An evaluation whose pack has a ceiling-gated metric (s2 top-1 median, <= 0.85), a floor-gated one (S3 std,
    >= 0.02 / B+ 0.04), a rail (conservation == true) and an ungated one."""
    from engine import evaluate_gates, run_verdict
    ev = _ev(value)
    ev.pack = {"s2": {"top1_share_median_multi_tz": value, "tz_count_median": 10 * value},
               "s3": {"merchant_share_std_median": std}, "s4": {"count_conservation_all_pairs": rail},
               "fidelity": {"prior_jsd_mean": value / 10}}
    ev.gates = evaluate_gates(ev.pack)
    ev.verdict = run_verdict(ev.gates)
    return ev


def test_gates_are_the_worst_seeds_and_metrics_the_mean_and_the_worst_in_the_gate_direction():
    from engine import run_verdict
    from tuning.study.seed_robust import seed_metrics, metric_directions, study_directions
    from tuning.study.trial_result import TrialResult, flatten_pack
    evs = [_gated(0.70, 0.05), _gated(0.80, 0.03, rail=False), _gated(0.74, 0.045)]
    agg = aggregate(evs, [1, 2, 3], None)
    assert run_verdict(agg.gates) == agg.verdict == "FAIL_REALISM"         # the gates agree with the verdict
    assert agg.gates["stretch"]["3A-S01_s2_top1_median_multi_tz"]["value"] == 0.80   # ceiling: the highest
    assert agg.gates["stretch"]["3A-S04_s3_merchant_share_std_median"]["value"] == 0.03   # floor: the lowest
    assert agg.gates["hard"]["3A-VXX_s4_count_conservation"]["status"] == "FAIL"
    r = TrialResult.from_evaluation(agg, "P1.2", "J", directions={"s2.tz_count_median": "up"})
    m = r.metrics()
    assert m["s2.top1_share_median_multi_tz"] == pytest.approx((0.70 + 0.80 + 0.74) / 3)
    assert m["worst.s2.top1_share_median_multi_tz"] == 0.80 and m["worst.s3.merchant_share_std_median"] == 0.03
    assert m["s4.count_conservation_all_pairs"] == pytest.approx(2 / 3)
    assert m["worst.s4.count_conservation_all_pairs"] == 0.0
    assert m["worst.s2.tz_count_median"] == 7.0          # no gate: the study's direction (here "up": the lowest)
    assert m["gate.3A-V01_s2_top1_median_multi_tz"] == 1.0 and m["gate.3A-S01_s2_top1_median_multi_tz"] == 0.0
    assert m["gate.3A-S04_s3_merchant_share_std_median"] == 0.0 and m["worst.J"] == 0.70
    # a metric nothing judges has no worst value; one seed: the mean and the worst are its own value
    assert "worst.s2.tz_count_median" not in TrialResult.from_evaluation(agg, "P1.2", "J").metrics()
    mean, worst = seed_metrics([flatten_pack(evs[0].pack)], metric_directions([evs[0].gates]))
    assert mean == flatten_pack(evs[0].pack) and worst["s3.merchant_share_std_median"] == 0.05
    directions = study_directions(parse_study(yaml.safe_load(ROBUST), "robust.yaml"))
    assert directions == {"s2.top1_share_median_multi_tz": "down", "s4.escalated_multi_zone_rate": "up",
                          "fidelity.prior_jsd_mean": "down"}


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    return parse_study(yaml.safe_load(ROBUST), "robust.yaml")


@pytest.fixture(scope="module")
def base():
    return PolicySet.from_dir(Path(__file__).resolve().parents[2] / "policies")


def test_seed_robust_j_is_the_mean_of_independent_single_seed_objectives(spec, base):
    knobs = {"blend_lambda": 0.12, "hub_cap": 1.0, "tail_gamma": 1.0}
    robust = SeedRobustObjective(spec, [42, 7], base).evaluate(knobs)
    singles = [PhaseObjective(spec, s, base).evaluate(knobs) for s in (42, 7)]
    assert robust.seed_values == [e.value for e in singles]
    assert robust.value == pytest.approx(math.fsum(e.value for e in singles) / 2, abs=1e-15)
    assert robust.identity["seed"] == 42 and [e.identity["seed"] for e in robust.per_seed] == [42, 7]
    assert robust.second_value == pytest.approx(
        (singles[0].pack["fidelity"]["prior_jsd_mean"] + singles[1].pack["fidelity"]["prior_jsd_mean"]) / 2)


@pytest.mark.parametrize("threads", [1, 2])
def test_many_candidates_seed_by_seed_score_as_each_alone(spec, base, threads, monkeypatch):
    # two seeds at once (what a large world gets) must give what one seed after another gives
    import tuning.study.objective as objective

    monkeypatch.setattr(objective, "seed_threads", lambda pairs: threads)
    knobs = [{"blend_lambda": 0.12, "hub_cap": 1.0, "tail_gamma": 1.0}, {"blend_lambda": 0.02},
             {"blend_lambda": 0.0, "hub_cap": 0.8, "tail_gamma": 2.0}]
    from engine import ChainCache

    many = SeedRobustObjective(spec, [42, 7, 101], base, cache=ChainCache(max_entries=3)).evaluate_many(knobs)
    alone = SeedRobustObjective(spec, [42, 7, 101], base)
    for got, values in zip(many, knobs, strict=True):
        want = alone.evaluate(values)
        assert (got.value, got.seed_values, got.seeds, got.vetoes, got.verdict) == \
            (want.value, want.seed_values, want.seeds, want.vetoes, want.verdict)
        assert got.pack == want.pack and got.gates == want.gates and got.identity == want.identity
        assert (got.fidelity, got.second_value, got.targets) == (want.fidelity, want.second_value, want.targets)


def test_on_seed_callback_sees_running_means_and_can_stop_early(spec, base):
    seen = []
    obj = SeedRobustObjective(spec, [42, 7, 101], base)
    ev = obj.evaluate({"blend_lambda": 0.05}, on_seed=lambda i, s, mean: seen.append((i, s, mean)) or i == 0)
    assert obj.pruned and ev.seeds == [42] and len(seen) == 1 and seen[0][:2] == (0, 42)
    full = obj.evaluate({"blend_lambda": 0.05}, on_seed=lambda *a: False)
    assert not obj.pruned and full.seeds == [42, 7, 101]


def test_multi_seed_multi_objective_sweep_logs_history_front_and_plot(project, capsys):
    from tuning.sweep.__main__ import main
    (project / "studies" / "robust.yaml").write_text(ROBUST)
    # with the progress bar on: its "best feasible J" postfix reads J from a two-objective study
    assert main(["--phase", "robust", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    study = load("t-robust")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 4 and all(len(t.values) == 2 for t in done)
    runs = {int(r.data.tags["optuna_trial"]): r for r in trial_runs("t-robust")}
    assert len(runs) == 4
    from tuning.trail.tracking import client
    mlc = client()
    for t in done:
        run = runs[t.number]
        assert run.data.tags["seeds"] == "42,7"
        history = mlc.get_metric_history(run.info.run_id, "seed.J")
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == [0, 1]
        assert run.data.metrics["J"] == pytest.approx(sum(m.value for m in history) / 2, abs=1e-12)
        assert run.data.tags["pareto"] in ("true", "false")
    # the front in the summary is exactly the non-dominated feasible trials
    feasible = [(t.number, t.values[0], t.values[1]) for t in done if t.user_attrs["result"]["veto"] == "PASS"]
    assert sorted(r["trial"] for r in summary["pareto"]) == front(feasible, "minimize")
    assert {n for n, r in runs.items() if r.data.tags["pareto"] == "true"} == {r["trial"] for r in summary["pareto"]}
    parent = mlc.get_run(summary["parent_run_id"])
    art = Path(parent.info.artifact_uri.replace("file://", ""))
    html = (art / "pareto.html").read_text()
    assert "Pareto front" in html and not re.search(r"<script[^>]+src=[\"']https?:", html)   # plotly inline
    from tuning.rank import main as rank
    assert rank(["--phase", "P1.2", "--pareto", "--json"]) == 0
    ranked = json.loads(capsys.readouterr().out)
    assert {r["trial"] for r in ranked} == {r["trial"] for r in summary["pareto"]}
    assert all(r["second"] is not None for r in ranked) and all(r["pareto"] is True for r in ranked)
    assert rank(["--phase", "P1.2", "--pareto"]) == 0   # the plain table: second objective beside J
    head, *rows = capsys.readouterr().out.splitlines()
    assert head.split()[:10] == ["rank", "study", "trial", "mlflow_run_id", "J", "worst.J", "veto", "verdict",
                                 "targets", "second_objective"]
    by_trial = {r["trial"]: r for r in ranked}
    assert sorted(int(row.split()[2]) for row in rows) == sorted(by_trial)
    for row in rows:
        cells = row.split()
        assert cells[6] == "PASS" and float(cells[9]) == pytest.approx(by_trial[int(cells[2])]["second"],
                                                                        abs=1e-6)


def test_pareto_front_golden():
    pts = [(0, 0.0, 0.001), (1, 0.2, 0.010), (2, 0.1, 0.020), (3, 0.2, 0.010), (4, 0.3, 0.030), (5, 0.05, 0.001)]
    # 2 is dominated by 1 (higher J, lower divergence); 0 by 5 (same divergence, higher J); 1 and 3 tie
    assert front(pts, "minimize") == [1, 3, 4, 5]
    assert front(pts, "maximize") == [4]
    assert front([], "minimize") == []


def test_a_four_seed_trial_logs_means_and_worst_seeds_that_rank_and_the_ui_show(project, capsys):
    """A real sweep's MLflow store: each metric is the mean of its per-seed history, worst.* its worst seed's."""
    from engine import evaluate_gates
    from tuning.sweep.__main__ import main
    from tuning.trail.tracking import client
    four = ROBUST.replace("seeds: [42, 7]", "seeds: [42, 7, 101, 202]").replace("trials: 4", "trials: 2")
    (project / "studies" / "four.yaml").write_text(four.replace("study: t-robust", "study: t-four"))
    assert main(["--phase", "four", "--json", "--no-progress", "--reports", "0"]) == 0
    capsys.readouterr()
    mlc, name = client(), "s3.merchant_share_std_median"
    runs = trial_runs("t-four")
    assert len(runs) == 2
    for run in runs:
        history = sorted(mlc.get_metric_history(run.info.run_id, f"seed.{name}"), key=lambda m: m.step)
        values = [m.value for m in history]
        assert [m.step for m in history] == [0, 1, 2, 3] and len(set(values)) > 1   # the seeds differ
        assert run.data.metrics[name] == pytest.approx(math.fsum(values) / 4, rel=1e-15, abs=0)
        assert run.data.metrics[f"worst.{name}"] == min(values)   # a floor gate (>= 0.02): the lowest seed
        assert run.data.metrics["worst.J"] == min(m.value for m in mlc.get_metric_history(run.info.run_id, "seed.J"))
        # gate.<id> passes only when every seed's own pack passes it, and then agrees with the worst-seed verdict
        doc = json.loads((Path(run.info.artifact_uri.replace("file://", "")) / "metric_pack.json").read_text())
        seed_gates = [evaluate_gates(s["pack"]) for s in doc["per_seed"]]
        ok = {fam: all(all(g[fam][gid]["status"] == "PASS" for g in seed_gates) for gid in seed_gates[0][fam])
              for fam in ("hard", "stretch")}
        for fam, block in seed_gates[0].items():
            for gid in block:
                every = all(g[fam][gid]["status"] == "PASS" for g in seed_gates)
                assert run.data.metrics[f"gate.{gid}"] == (1.0 if every else 0.0), gid
        verdict = "PASS_BPLUS" if ok["hard"] and ok["stretch"] else "PASS_B" if ok["hard"] else "FAIL_REALISM"
        assert run.data.tags["verdict"] == verdict
    from tuning.rank import main as rank
    assert rank(["--phase", "P1.2", "--study", "t-four", "--json"]) == 0
    ranked = json.loads(capsys.readouterr().out)
    rows = {r["mlflow_run_id"]: r for r in ranked}
    key = "s2.top1_share_median_multi_tz"
    for run in runs:   # rank reads the same means and worst values
        assert rows[run.info.run_id]["metrics"][key] == run.data.metrics[key]
        assert rows[run.info.run_id]["worst"][key] == run.data.metrics[f"worst.{key}"]
        assert rows[run.info.run_id]["worst_J"] == run.data.metrics["worst.J"]
        # and each seed's J, in seed order, as the run's per-seed history holds them (it listed none)
        assert rows[run.info.run_id]["seed_values"] == [
            m.value for m in sorted(mlc.get_metric_history(run.info.run_id, "seed.J"), key=lambda m: m.step)]
    assert rank(["--phase", "P1.2", "--study", "t-four", "--open"]) == 0
    table = capsys.readouterr().out.splitlines()
    head = table[0].split()
    view = json.loads(mlc.get_experiment_by_name("3A-P1.2").tags["mlflow.sharedViewState.rank"])
    assert head[4:6] == ["J", "worst.J"] and "s2.top1_median_mtz" in head     # the table: the view's columns
    assert {"metrics.`J`", "metrics.`worst.J`", f"metrics.`{key}`"} <= set(view["selectedColumns"])
    assert table[1].split()[3] == ranked[0]["mlflow_run_id"]
    assert float(table[1].split()[5]) == pytest.approx(ranked[0]["worst_J"], abs=1e-6)
