"""TrialResult: one record per trial feeds the Optuna attribute, the MLflow run and metric_pack.json."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from engine.policies import PolicySet
from tests.tuning.conftest import REPO, load, trial_runs
from tuning.study.ranking import trial_row
from tuning.study.spec import load_study
from tuning.study.trial_result import RESULT_ATTR, TrialResult
from tuning.study.trial_row import TrialRow

KNOBS = {"blend_lambda": 0.05, "hub_cap": 0.9, "tail_gamma": 1.0}


@pytest.fixture(scope="module")
def evaluation():
    from tuning.study.objective import SeedRobustObjective
    spec = load_study(REPO / "studies" / "P1.2.yaml", str(REPO / "studies"))
    obj = SeedRobustObjective(spec, [42, 7], PolicySet.from_dir(REPO / "policies"))
    return spec, obj.evaluate(KNOBS)


def test_record_carries_the_evaluation(evaluation):
    spec, ev = evaluation
    r = TrialResult.from_evaluation(ev, "P1.2", "J", {"seconds.harness_pre_log": 0.5})
    assert dataclasses.is_dataclass(r) and r.mlflow_run_id is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.J = 0.0  # type: ignore[misc]
    assert r.J == ev.value and r.seeds == (42, 7) and r.seed_values == tuple(ev.seed_values)
    assert r.second == ev.second_value is not None and r.vetoes == tuple(ev.vetoes)
    tags, metrics = r.tags(), r.metrics()
    assert tags["veto"] == ("PASS" if ev.feasible else "FAIL") and tags["engine_run_id"] == ev.identity["run_id"]
    assert tags["digest.country_zone_alphas"] == ev.identity["policy_digests"]["country_zone_alphas"]
    assert metrics["J"] == ev.value and metrics["second_objective"] == ev.second_value
    assert metrics["seconds.harness_pre_log"] == 0.5
    assert metrics["s2.top1_share_median_multi_tz"] == ev.pack["s2"]["top1_share_median_multi_tz"]
    assert any(k.startswith("gate.") for k in metrics) and "gates.hard_passed" in metrics
    history = r.history()
    assert [(k, step) for k, _, step in history if k == "seed.J"] == [("seed.J", 0), ("seed.J", 1)]
    assert [v for k, v, _ in history if k == "seed.J"] == list(ev.seed_values)
    doc = json.loads(json.dumps(r.artifact_doc(), default=str))
    assert doc["J"] == ev.value and [s["seed"] for s in doc["per_seed"]] == [42, 7]
    # the witness replays each seed's own pack; the trial's metrics are the means, worst.* the worst seed's
    assert [s["pack"] for s in doc["per_seed"]] == json.loads(json.dumps([e.pack for e in ev.per_seed], default=str))
    std = [e.pack["s3"]["merchant_share_std_median"] for e in ev.per_seed]
    assert doc["metrics"]["s3.merchant_share_std_median"] == metrics["s3.merchant_share_std_median"] == sum(std) / 2
    assert doc["worst"]["s3.merchant_share_std_median"] == metrics["worst.s3.merchant_share_std_median"] == min(std)


def test_one_row_feeds_the_user_attr_and_reads_back_from_trial_and_run(evaluation):
    """The record's row is what the Optuna user attribute stores, what a trial reads back as, and what an MLflow
    run with the record's tags and metrics reads back as: one feasibility, one knob mapping, two run ids."""
    spec, ev = evaluation
    r = TrialResult.from_evaluation(ev, "P1.2", "J").with_run("abc123")
    row = r.row(spec.key_metrics)
    assert row.mlflow_run_id == "abc123" and row.engine_run_id == ev.identity["run_id"] != "abc123"
    assert row.feasible == (not ev.vetoes) and row.worst_J == min(ev.seed_values) and row.knobs == r.knobs
    attr = r.user_attr(spec.key_metrics)
    assert attr["mlflow_run_id"] == "abc123" and attr["chain_seconds"] == r.chain_seconds   # the persisted keys

    class FakeTrial:
        number, values, params = 4, [ev.value], {"concentration_scale": 0.5}
        user_attrs = {RESULT_ATTR: attr}
    read = trial_row(FakeTrial())
    assert read == row.with_(trial=4, knobs={"concentration_scale": 0.5})
    assert read.metrics["fidelity.prior_jsd_mean"] == ev.pack["fidelity"]["prior_jsd_mean"]
    assert TrialRow.from_user_attr(None).feasible is False  # no record: counted as vetoed
    assert TrialRow.from_json(json.loads(json.dumps(read.to_json()))) == read

    class Run:   # an MLflow run as the trail writes it (tags + metrics of the record, study and trial tags)
        class info:
            run_id = "abc123"

        class data:
            tags = {**r.tags(), "study": "s", "optuna_trial": "4"}
            metrics = r.metrics()
            params = {"concentration_scale": "0.5"}
    from_run = TrialRow.from_mlflow_run(Run(), spec.key_metrics)
    assert from_run.with_(knobs={}, seed_values=()) == read.with_(study="s", knobs={}, seed_values=(),
                                                                  target_pass=from_run.target_pass)


def test_sweep_records_one_result_three_ways(project, capsys):
    from tuning.sweep.__main__ import main
    assert main(["--no-progress", "--json", "--phase", "P1.2", "--trials", "3"]) == 0
    capsys.readouterr()
    study = load("t-P1.2")
    runs = {r.info.run_id: r for r in trial_runs("t-P1.2")}
    assert len(runs) == 3
    for t in study.trials:
        rec = trial_row(t)
        run = runs[rec.mlflow_run_id]
        art = Path(run.info.artifact_uri.replace("file://", ""))
        doc = json.loads((art / "metric_pack.json").read_text())
        assert {"policies", "metric_pack.json", "gate_table.md"} <= {p.name for p in art.iterdir()}
        assert doc["J"] == rec.seed_values[0] == run.data.metrics["J"] == t.values[0] == rec.J
        assert run.data.tags["veto"] == rec.veto and rec.feasible == (not doc["vetoes"])
        assert run.data.tags["engine_run_id"] == rec.engine_run_id == doc["identity"]["run_id"]
        assert run.data.tags["verdict"] == rec.verdict == doc["verdict"]
        assert TrialRow.from_mlflow_run(run, list(rec.metrics)).with_(knobs={}, study=None, seed_values=(),
                                                                       target_pass=rec.target_pass, pareto=None) \
            == rec.with_(knobs={}, seed_values=())
        for m, v in rec.metrics.items():
            assert run.data.metrics[m] == pytest.approx(v)
        params = {k: float(v) for k, v in run.data.params.items()}
        assert params == pytest.approx({**t.params, "tail_gamma": 1.0}) == doc["knobs"]  # the fixed knob too


def test_plots_are_self_contained_and_leave_the_import_system_alone(tmp_path):
    """Optuna's plotly plots, written through its public API: no import is blocked through sys.modules beyond what
    the process itself marked absent (what the trail process marks: tuning.trail.server.UNUSED_HERE, which spares
    this test's process Optuna's scikit-learn and matplotlib imports as it spares the trail's)."""
    import subprocess

    from tuning.trail.server import UNUSED_HERE
    code = ("import sys\n"
            f"sys.modules.update(dict.fromkeys({UNUSED_HERE!r}))\n"
            "import optuna; optuna.logging.set_verbosity(30)\n"
            "from pathlib import Path; from tuning.trail.tracking import write_study_plots\n"
            "s = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))\n"
            "s.optimize(lambda t: t.suggest_float('a', 0, 1) + t.suggest_float('b', 0, 1) ** 2, n_trials=12)\n"
            f"print(sorted(write_study_plots(s, Path({str(tmp_path)!r}))))\n"
            "print(sorted(k for k, v in sys.modules.items() if v is None))\n"
            "import importlib.util; print(importlib.util.find_spec('json') is not None)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == str(["optimization_history", "parallel_coordinate", "param_importances"])
    assert lines[1] == str(sorted(UNUSED_HERE))  # no other module was blocked (a None entry in sys.modules)
    for name in ("optimization_history", "parallel_coordinate", "param_importances"):
        assert (tmp_path / f"{name}.html").stat().st_size > 100_000  # plotly.js inline


def test_only_a_local_artifact_location_is_written_directly():
    from tuning.trail.tracking import local_artifact_dir
    assert local_artifact_dir("file:///tmp/a%20b/1/abc/artifacts") == Path("/tmp/a b/1/abc/artifacts")
    assert local_artifact_dir("/srv/mlruns/1/abc/artifacts") == Path("/srv/mlruns/1/abc/artifacts")
    for remote in ("mlflow-artifacts:/1/abc/artifacts", "mlflow-artifacts://host:5000/1/abc/artifacts",
                   "s3://bucket/1/abc/artifacts", "http://host/1/abc"):
        assert local_artifact_dir(remote) is None
