"""tuning.bench: the harness against its hand-written peer on the same points, figures beside targets."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.tuning.conftest import REPO, env_for, make_project, run_module, seed_store

pytestmark = pytest.mark.slow


def test_peer_scores_the_points_it_is_given_with_the_harness_scoring(tmp_path):
    root = make_project(tmp_path / "proj")
    seed_store(root)
    points = [{"blend_lambda": 0.0, "hub_cap": 1.0}, {"blend_lambda": 0.1, "hub_cap": 0.9}]
    (root / "points.json").write_text(json.dumps(points))
    out = run_module(root, "tuning.bench.peer", "--phase", "P1.2", "--points", "points.json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["params"] == points and doc["trials"] == 2 and doc["chain_s"] > 0

    from engine.policies import PolicySet
    from tuning.study.objective import SeedRobustObjective
    from tuning.study.spec import load_study
    spec = load_study(root / "studies" / "P1.2.yaml")
    obj = SeedRobustObjective(spec, spec.seeds, PolicySet.from_dir(root / "policies"))
    assert doc["J"] == [obj.evaluate({**p, "tail_gamma": 1.0}).value for p in points]
    from mlflow import MlflowClient  # MLflowCallback logged one run per trial into the project's store
    mlc = MlflowClient(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    runs = mlc.search_runs([mlc.get_experiment_by_name("bench-peer").experiment_id])
    assert sorted(r.data.metrics["J"] for r in runs) == sorted(doc["J"])


def test_bench_reports_each_figure_beside_its_target_as_a_program(tmp_path):
    """The sweep and certify figures end to end (``--rounds 0``: the paired peer rounds are the next test's, with
    the peer's own program in the test above); a figure not run is beside its target as not measured."""
    from tuning.bench.__main__ import TARGETS

    done = subprocess.run([sys.executable, "-m", "tuning.bench", "--json", "--sweep-trials", "2", "--rounds", "0",
                           "--keep", str(tmp_path / "bench")], cwd=REPO, env=env_for(tmp_path),
                          capture_output=True, text=True, timeout=600)   # as a program, from the project root
    assert done.returncode == 0, done.stderr[-800:]
    result = json.loads(done.stdout)
    assert result["peer"] is None and result["measured"]["peer_ratio"] is None and result["meets"]["peer_ratio"] is None
    assert set(result["measured"]) == set(TARGETS) == set(result["meets"])
    sweep = result["sweep"]
    assert result["measured"]["fixed_start_close_s"] == sweep["startup_and_close_s"] > 0
    assert result["meets"]["sweep_200_wall_s"] == (sweep["projected_200_s"] <= TARGETS["sweep_200_wall_s"])
    assert sweep["trials"] == 2 and result["certify"]["seeds"] == [42, 7, 101, 202]
    assert result["measured"]["sweep_200_wall_s"] == sweep["projected_200_s"]


def test_paired_rounds_alternate_which_side_runs_first_on_the_first_rounds_points(tmp_path, monkeypatch):
    import tuning.bench.__main__ as bench

    calls, points = [], [{"blend_lambda": 0.05, "hub_cap": 0.9}]

    def harness(root, trials, study, extra=()):
        calls.append(("harness", root.name))
        return {"wall_s": 2.0, "span_s": 1.0, "fixed_s": 1.0, "trials": trials, "chain_s": 0.5, "params": points,
                "J": [0.1]}

    def peer(root, given, study):
        calls.append(("peer", root.name))
        assert given == points   # the peer scores the harness's points, even where it runs first
        return {"wall_s": 1.0, "span_s": 0.5, "fixed_s": 0.5, "trials": 1, "chain_s": 0.4, "J": [0.1], "params": given}

    monkeypatch.setattr(bench, "project", lambda root: root)
    monkeypatch.setattr(bench, "run_harness", harness)
    monkeypatch.setattr(bench, "run_peer", peer)
    out = bench.compare_with_peer(tmp_path, 1, 3)
    assert [r["order"] for r in out["rounds"]] == [["harness", "peer"], ["peer", "harness"], ["harness", "peer"]]
    assert calls == [("harness", "round0-harness"), ("peer", "round0-peer"), ("peer", "round1-peer"),
                     ("harness", "round1-harness"), ("harness", "round2-harness"), ("peer", "round2-peer")]
    assert out["ratio_median"] == 2.0 and out["max_abs_J_difference"] == 0.0


def test_bench_distributed_reports_each_figure_beside_its_target_with_its_spread():
    from tuning.bench_distributed.__main__ import TARGET_RATIO, _line, figures

    def run(wall, ratio, retry):
        return {"wall_seconds": wall, "ratio": ratio, "where": {"startup_s": 1.0, "close_s": 0.5, "retry_after_kill_s":
                                                                retry, "log_seconds_per_trial": {"median": 0.1}},
                "cpu_seconds": {"sweeps_and_trails": 9.0, "mlflow_server": 1.0, "postgresql": 0.5,
                                "one_process_without_trials": 2.0}}

    rounds = [{"local": {"wall_seconds": w, "cpu_seconds": {"one_process_without_trials": 2.0}},
               "defaults": run(w * r, r, 0.5), "tuned": run(w * 1.2, 1.2, None)}
              for w, r in ((10.0, 1.5), (12.0, 1.8), (11.0, 1.7))]
    f = figures(rounds)
    assert f["local_wall_seconds"] == {"median": 11.0, "min": 10.0, "max": 12.0}
    assert f["defaults"]["ratio"] == {"median": 1.7, "min": 1.5, "max": 1.8, "target": TARGET_RATIO,
                                      "within_target": False}
    assert f["tuned"]["ratio"]["within_target"] and f["tuned"]["retry_after_kill_s"] is None
    line = _line({"figures": f, "log_probe": {"seconds_median": 0.12, "requests_per_trial": 8.0,
                                              "server_cpu_ms_per_trial": {"mlflow_server": 80.0, "postgresql": 12.0}},
                  "load_average_before": [1.0, 1, 1], "load_average_after": [1.5, 1, 1]})
    assert "defaults 1.70x (runs 1.50-1.80; target <= 1.6x)" in line
    assert "8 requests and 92 ms of the servers' CPU per trial" in line
    only = figures([{k: v for k, v in r.items() if k != "tuned"} for r in rounds])   # --defaults-only
    assert "tuned" not in only and only["defaults"] == f["defaults"]
    line = _line({"figures": only, "log_probe": {"seconds_median": 0.12, "requests_per_trial": 8.0,
                                                 "server_cpu_ms_per_trial": {"mlflow_server": 80.0}},
                  "load_average_before": [1.0, 1, 1], "load_average_after": [1.5, 1, 1]})
    assert "defaults 1.70x" in line and "tuned" not in line


def test_bench_distributed_runs_the_former_settings_unless_defaults_only():
    from argparse import Namespace

    from tuning.bench_distributed.__main__ import TUNED_ENV, USER_ENV, settings, sweep_argv

    assert settings(Namespace(defaults_only=False)) == ("defaults", "tuned")
    assert settings(Namespace(defaults_only=True)) == ("defaults",)
    user, former = sweep_argv("P1.2", 40, "s", "x", tuned=False), sweep_argv("P1.2", 40, "s", "x", tuned=True)
    assert "--reports" not in user and former[former.index("--reports") + 1] == "0"
    assert set(TUNED_ENV) == set(USER_ENV)   # the defaults run clears what the former settings set


@pytest.mark.parametrize("meanwhile, killed_index, kills", [
    ("FAIL", 1, 1),       # another worker saw the owner dead and failed its trial: that trial was killed
    ("COMPLETE", 0, 2),   # the owner told its trial just before the kill: nothing was killed mid-trial
])
def test_the_kill_watch_kills_one_worker_mid_trial(tmp_path, meanwhile, killed_index, kills):
    """``kill_mid_trial`` (bench_distributed and the four-hosts test) kills the worker of the RUNNING trial started
    last (the most of its run ahead). Between its kill and its second read of the trial, the trial may have been
    failed for its owner's death by another worker. That is the kill it wanted; watching on would kill a second
    worker, perhaps the one running the retry. A trial told meanwhile was not killed mid-trial: the watch goes on
    to the other one."""
    import optuna
    from optuna.trial import TrialState

    from tuning.bench_distributed.__main__ import kill_mid_trial
    from tuning.storage.budget import DEAD_WORKER_REASON

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=url)
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=1.0))   # one trial COMPLETE
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    procs = [subprocess.Popen(sleeper) for _ in range(2)]
    started, held, restarts = list(procs), [study.ask(), study.ask()], []
    for trial, proc in zip(held, procs):
        trial.set_user_attr("worker", {"pid": proc.pid})

    def restart():   # what happens to the trial started last meanwhile, then the killed worker's replacement
        if not restarts:
            storage, tid = optuna.storages.RDBStorage(url), held[1]._trial_id
            if meanwhile == "FAIL":
                storage.set_trial_system_attr(tid, "failed_reason", DEAD_WORKER_REASON)
                storage.set_trial_state_values(tid, TrialState.FAIL)
            else:
                storage.set_trial_state_values(tid, TrialState.COMPLETE, [0.5])
        restarts.append(subprocess.Popen(sleeper))
        return restarts[-1]

    try:
        killed = kill_mid_trial(procs, url, "s", restart, time.time() + 60)
        assert killed is not None and killed["trial"] == held[killed_index].number and len(restarts) == kills
        assert [p.poll() is not None for p in started] == [kills == 2, True]   # only the killed workers are gone
    finally:
        for p in started + restarts:
            p.kill()
            p.wait()
