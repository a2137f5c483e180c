"""Independent sweep workers on a real PostgreSQL server and a real MLflow tracking server.

The module fixture starts them as the README does, with ``scripts/local_cluster.sh start`` (a throw-away
PostgreSQL cluster, as the ``postgres`` user when the tests run as root, and an ``mlflow server`` backed by
it, on free loopback ports) and stops them at the end. The last test runs the README's cluster sequence
itself, from a shell. ``.ci/run`` installs Debian's postgresql when it is absent.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.environment import NO_POSTGRES
from tests.tuning.conftest import REPO, make_project, trial_runs

pytestmark = pytest.mark.slow
N_TRIALS, N_WORKERS = 16, 4   # enough trials after the first COMPLETE one for the watch to catch a RUNNING one (8 missed
#                                every one once, in CI on a loaded machine)
SCRIPT = REPO / "scripts" / "local_cluster.sh"


def _cluster(action: str, cluster_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), action], env=dict(os.environ, SEG3A_CLUSTER_DIR=str(cluster_dir)),
                          capture_output=True, text=True, timeout=300)


def _exports(stdout: str) -> dict:
    return dict(re.findall(r"^export (\w+)=(\S+)$", stdout, re.M))


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    import tuning.local_services.services as ls
    try:
        ls.pg_bin("initdb")
    except Exception:  # noqa: BLE001
        pytest.skip(NO_POSTGRES)
    cluster_dir = tmp_path_factory.mktemp("cluster")
    try:
        started = _cluster("start", cluster_dir)
        assert started.returncode == 0, started.stderr
        exports = _exports(started.stdout)
        yield {"storage": exports["SEG3A_STORAGE"], "tracking_uri": exports["MLFLOW_TRACKING_URI"],
               "dir": cluster_dir}
    finally:
        _cluster("purge", cluster_dir)


def _env(tracking_uri: str) -> dict:
    """The defaults a user runs: the default heartbeat (10 s) and grace (60 s), report HTML on."""
    env = {k: v for k, v in os.environ.items() if k not in ("SEG3A_HEARTBEAT_INTERVAL", "SEG3A_GRACE_PERIOD")}
    env.update({"MLFLOW_TRACKING_URI": tracking_uri, "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", "")})
    return env


def _states(trials, killed) -> str:
    """What a failed assertion on the trials needs to be read: the kill and every trial's state and origin."""
    rows = [f"{t.number} {t.state.name} pid={(t.user_attrs.get('worker') or {}).get('pid')} "
            f"failed_trial={t.system_attrs.get('failed_trial')} "
            f"reason={t.system_attrs.get('failed_reason', '')[:24]} "
            f"start={t.datetime_start and t.datetime_start.time()} "
            f"end={t.datetime_complete and t.datetime_complete.time()}"
            for t in trials]
    return f"killed {killed}\n" + "\n".join(rows)


def _worker(root: Path, env: dict, storage: str, study: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tuning.sweep", "--phase", "P1.2", "--trials", str(N_TRIALS),
                             "--storage", storage, "--study", study, "--no-progress", "--json", "--top", "1"],
                            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_four_hosts_one_study_survive_a_killed_worker(services, tmp_path, monkeypatch):
    from tuning.bench_distributed.__main__ import kill_mid_trial
    from tuning.storage.budget import DEAD_WORKER_REASON
    root = make_project(tmp_path / "proj")
    env, storage, study_name = _env(services["tracking_uri"]), services["storage"], "dist-P1.2"
    workers = [_worker(root, env, storage, study_name) for _ in range(N_WORKERS)]
    try:   # the killed "host" comes back at once (kill_mid_trial restarts it)
        killed = kill_mid_trial(workers, storage, study_name, lambda: _worker(root, env, storage, study_name),
                                time.time() + 120)
        assert killed is not None, "no worker was caught holding a RUNNING trial"
        outs = [w.communicate(timeout=240) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    for w, (out, err) in zip(workers, outs):
        assert w.returncode == 0, err[-2000:]
        assert json.loads(out)["trials_complete"] == N_TRIALS

    trials = optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == N_TRIALS
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert killed["trial"] in [f.number for f in failed]
    for f in failed:  # known dead (a process of this host that is gone): failed without waiting for the 60 s grace
        assert f.system_attrs["failed_reason"] == DEAD_WORKER_REASON
    # the killed trial is retried with its parameters by Optuna's retry callback (a kill between two suggestions
    # leaves fewer parameters: the retry suggests the rest); under load the killed process may also hold the trial
    # it asked ahead, failed the same way, whose retry the complete budget may no longer need
    lost = next(f for f in failed if f.number == killed["trial"])
    retries = [t for t in complete if t.system_attrs.get("failed_trial") == lost.number]
    assert len(retries) == 1 and lost.params.items() <= retries[0].params.items(), _states(trials, killed)

    # the study is closed once: one process writes the plots and the report, the others name its parent run
    summaries = [json.loads(out) for out, _ in outs]
    closers = [s["parent_run_id"] for s in summaries if "closed_by" not in s]
    assert len(closers) == 1 and {s["closed_by"] for s in summaries if "closed_by" in s} == set(closers)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", services["tracking_uri"])
    runs = trial_runs(study_name)
    assert len(runs) == N_TRIALS, "one MLflow run per complete trial, no duplicate"
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags["trial_key"] for r in runs}) == N_TRIALS
    assert {t.user_attrs["result"]["mlflow_run_id"] for t in complete} == {r.info.run_id for r in runs}

    from tuning.trail.tracking import client
    mlc = client()
    reported = [r for r in runs if "report.html" in {a.path for a in mlc.list_artifacts(r.info.run_id)}]
    assert len(reported) == 1, "one report for the study, not one per worker"
    assert "optimization_history.html" in {a.path for a in mlc.list_artifacts(closers[0])}
    for s in summaries:   # the other parent runs name the closer's
        closed_by = mlc.get_run(s["parent_run_id"]).data.tags.get("closed_by")
        assert closed_by == (None if s["parent_run_id"] == closers[0] else closers[0])

    points = {tuple(sorted(t.params.items())) for t in complete}
    # tuning/sampler_streams.py keys each trial's stream by its number: no two workers share a stream
    assert len(points) == N_TRIALS, "workers on different hosts proposed the same point"


def test_forked_workers_on_postgresql_and_a_tracking_server(services, tmp_path, monkeypatch):
    """``--workers 2`` forked from a coordinator that holds a PostgreSQL pool and talks to a tracking server: each
    worker opens its own storage and logs through the coordinator's trail process; the study ends consistent."""
    root = make_project(tmp_path / "proj")
    out = subprocess.run([sys.executable, "-m", "tuning.sweep", "--phase", "P1.2", "--trials", "4", "--workers", "2",
                          "--storage", services["storage"], "--study", "forked-P1.2", "--no-progress", "--json",
                          "--reports", "0"], cwd=root, env=_env(services["tracking_uri"]), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["trials_complete"] == 4
    trials = optuna.load_study(study_name="forked-P1.2", storage=services["storage"]).get_trials(deepcopy=False)
    assert sorted(t.state.name for t in trials) == ["COMPLETE"] * 4
    monkeypatch.setenv("MLFLOW_TRACKING_URI", services["tracking_uri"])
    runs = trial_runs("forked-P1.2")
    assert {t.user_attrs["result"]["mlflow_run_id"] for t in trials} == {r.info.run_id for r in runs}
    assert {r.info.status for r in runs} == {"FINISHED"} and len(runs) == 4
    # a promotion registers the authority's model version through the tracking server (it refused a version whose
    # source is a logged model's artifacts without that model's id: every promote failed half-installed)
    import uuid

    from engine import PolicySet
    from tuning.trail.registry import register_authority
    from tuning.trail.tracking import client

    mlc, policies = client(), PolicySet.from_dir(root / "policies")
    run = mlc.create_run(mlc.create_experiment(f"registry-{uuid.uuid4().hex[:8]}"))
    entry = {"decision": "PROMOTED", "mlflow_run_id": run.info.run_id, "parameter_hash": policies.parameter_hash,
             "previous_authority": {}, "witness": {"status": "PASS"}}
    got = register_authority(mlc, run.info.run_id, policies, b"promotions: []\n", entry, txn=uuid.uuid4().hex,
                             policies_dir=root / "policies")
    assert got["version"] >= 1 and mlc.get_model_version_by_alias(got["name"], got["alias"]).version == \
        str(got["version"])


def test_bench_distributed_runs_as_a_program(services, tmp_path):
    """``python -m tuning.bench_distributed`` end to end as a program, on the local cluster this module runs
    (``--cluster-dir``: left running); refused on a directory no cluster runs from."""
    root = make_project(tmp_path / "proj")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def bench(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tuning.bench_distributed", *args], cwd=root, env=env,
                              capture_output=True, text=True, timeout=600)

    refused = bench("--cluster-dir", str(tmp_path / "none"), "--defaults-only")
    assert refused.returncode == 2 and refused.stderr.strip().startswith("E3A_TUN_050_USAGE: --cluster-dir"), \
        refused.stderr[-800:]
    # enough trials that one is still RUNNING when the first is COMPLETE (the bench kills its worker then, and starts
    # it again: one worker is enough for that; many hosts on one study are test_four_hosts_...'s); the former
    # settings' run is the same code on other settings (test_bench's unit tests read both)
    done = bench("--trials", "8", "--workers", "1", "--rounds", "1", "--probe-trials", "2", "--defaults-only",
                 "--no-fixed-probe", "--cluster-dir", str(services["dir"]), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["services"] == str(services["dir"]) and out["services_start_seconds"] is None
    (only,) = out["rounds"]
    assert set(only) == {"local", "defaults"} and set(out["figures"]) >= {"defaults"} and "tuned" not in out["figures"]
    assert {only[k]["trials_complete"] for k in ("local", "defaults")} == {8}
    assert out["figures"]["defaults"]["ratio"]["median"] > 0
    assert only["local"]["cpu_seconds"]["one_process_without_trials"] is None   # --no-fixed-probe: not measured
    assert out["figures"]["defaults"]["fixed_cpu_seconds_per_process"] is None
    probe = out["log_probe"]
    assert probe["requests_per_trial"] == 8 <= probe["requests_first_trial"] <= 9, probe   # 9: a first server-info
    assert probe["server_cpu_ms_per_trial"]["mlflow_server"] > 0
    assert not (root / ".cluster").exists()
    assert _cluster("status", services["dir"]).returncode == 0   # the module's cluster still runs


@pytest.fixture(scope="module")
def record():
    """A real four-seed P1.2 trial record, its policy files and knob values."""
    from engine.policies import PolicySet
    from tuning.study.objective import SeedRobustObjective
    from tuning.study.spec import load_study
    from tuning.study.trial_result import PolicyFiles, TrialResult
    spec = load_study(REPO / "studies" / "P1.2.yaml", str(REPO / "studies"))
    knobs = {"blend_lambda": 0.05, "hub_cap": 0.9, "tail_gamma": 1.0}
    ev = SeedRobustObjective(spec, spec.seeds, PolicySet.from_dir(REPO / "policies")).evaluate(knobs)
    return TrialResult.from_evaluation(ev, "P1.2", "J"), PolicyFiles.of(ev.policies), knobs


def _requests(monkeypatch) -> list[tuple[str, str]]:
    """Every HTTP request MLflow's client sends from this process, as (method, API path)."""
    import requests
    sent, original = [], requests.Session.request

    def request(session, method, url, *args, **kwargs):
        path = url.split("/api/2.0/", 1)[-1].split("?", 1)[0]
        sent.append((method.upper(), path if path.startswith("mlflow/") else path.split("/", 1)[0]))
        return original(session, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", request)
    return sent


def test_a_trial_run_is_a_bounded_number_of_requests(services, record, monkeypatch):
    """create_run (tags) + one log_batch (metrics, params, history; more only past MLflow's caps) + one upload
    of the artifact folder (one PUT per file) + set_terminated, whatever the number of metrics."""
    import dataclasses
    from tuning.trail.tracking import SweepTracker
    monkeypatch.setenv("MLFLOW_TRACKING_URI", services["tracking_uri"])
    result, policies, knobs = record
    tracker = SweepTracker("P1.2", "requests", "J")
    tracker.start_parent({}, {}, close_dead=False)
    files = 5   # policies/ (3 files), metric_pack.json, gate_table.md
    trial = [("POST", "mlflow/runs/create"), ("POST", "mlflow/runs/log-batch")] + \
        [("PUT", "mlflow-artifacts")] * files + [("POST", "mlflow/runs/update")]
    sent = _requests(monkeypatch)
    run_id = tracker.log_trial(0, 0, result, policies, knobs)
    assert sent == trial
    run = tracker.mlc.get_run(run_id)
    assert run.info.status == "FINISHED" and set(run.data.metrics) == {k for k in result.metrics()} | {
        k for k, _, _ in result.history()}
    assert run.data.params == {k: str(v) for k, v in knobs.items()} and run.data.tags["trial_key"] == "requests#0"
    sent.clear()   # 850 metrics more: still one log_batch (MLflow takes 1000 entities per request)
    wide = dataclasses.replace(result, extra_metrics={f"x.{i}": float(i) for i in range(1000 - len(result.metrics())
                                                                                         - len(result.history()) - 30)})
    tracker.log_trial(1, 1, wide, policies, knobs)
    assert sent == trial
    sent.clear()   # past the cap: two
    wider = dataclasses.replace(result, extra_metrics={f"x.{i}": float(i) for i in range(1200)})
    tracker.log_trial(2, 2, wider, policies, knobs)
    assert sent.count(("POST", "mlflow/runs/log-batch")) == 2 and len(sent) == len(trial) + 1
    sent.clear()   # a retry of trial 0 first removes its dead attempt's run: one search, one delete
    tracker.log_trial(3, 0, result, policies, knobs)
    assert sent == [("POST", "mlflow/runs/search"), ("POST", "mlflow/runs/delete")] + trial


def test_the_readme_cluster_sequence_runs_as_written_from_a_shell(services, tmp_path):
    """(Last in this module: its block stops the module's cluster.) The README's block, in bash: ``start`` while a cluster runs prints its exports, ``eval`` takes them,
    ``status`` repeats them, a sweep runs on them, ``stop`` ends it (and ``status`` then says so)."""
    readme = (REPO / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```bash\n(.*?)```", readme, re.S) if 'eval "$(scripts/local_cluster.sh' in b]
    assert "--trials 40" in block
    root = make_project(tmp_path / "proj")
    (root / "scripts").symlink_to(REPO / "scripts")
    env = dict(_env(services["tracking_uri"]), SEG3A_CLUSTER_DIR=str(services["dir"]))
    for var in ("MLFLOW_TRACKING_URI", "SEG3A_STORAGE"):
        env.pop(var, None)  # only what the block's eval brings
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", block.replace("--trials 40", "--trials 2")], cwd=root,
                         env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    expected = {"SEG3A_STORAGE": services["storage"], "MLFLOW_TRACKING_URI": services["tracking_uri"]}
    assert [l for l in out.stdout.splitlines() if l.startswith("export ")] == \
        [f"export {k}={expected[k]}" for k in ("MLFLOW_TRACKING_URI", "SEG3A_STORAGE")] * 2  # start, status
    assert "a local cluster already runs" in out.stderr  # the second start found the first
    assert re.search(r"^study team-P1.2 \(phase P1.2, seeds 42\): 2 complete, ", out.stdout, re.M), out.stdout
    after = _cluster("status", services["dir"])
    assert after.returncode == 1 and after.stdout == "" and "not running" in after.stderr
    # stop kept the cluster's database: started again, the study is there (as root too, where stop deleted it);
    # purge deletes it
    import tuning.local_services.services as ls

    pgdata = ls.pg_data_dir(Path(services["dir"]).resolve())   # where start finds it again: its server alone
    url = ls.start_postgres(pgdata)
    try:
        study = optuna.load_study(study_name="team-P1.2", storage=f"{url}/optuna")
        assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 2
    finally:
        ls.stop_postgres(pgdata)
    assert (Path(services["dir"]) / "artifacts").is_dir()
    assert _cluster("purge", services["dir"]).returncode == 0
    assert not pgdata.exists() and not (Path(services["dir"]) / "artifacts").exists()
    assert _cluster("status", services["dir"]).returncode == 1
