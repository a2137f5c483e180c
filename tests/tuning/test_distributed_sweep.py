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
import signal
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
N_TRIALS, N_WORKERS = 6, 4
SCRIPT = REPO / "scripts" / "local_cluster.sh"


def _cluster(action: str, cluster_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), action], env=dict(os.environ, SEG3A_CLUSTER_DIR=str(cluster_dir)),
                          capture_output=True, text=True, timeout=300)


def _exports(stdout: str) -> dict:
    return dict(re.findall(r"^export (\w+)=(\S+)$", stdout, re.M))


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    from tuning import local_services as ls
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
        _cluster("stop", cluster_dir)


def _env(tracking_uri: str) -> dict:
    env = dict(os.environ)
    env.update({"MLFLOW_TRACKING_URI": tracking_uri, "SEG3A_HEARTBEAT_INTERVAL": "1", "SEG3A_GRACE_PERIOD": "3",
                "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", "")})
    return env


def _worker(root: Path, env: dict, storage: str, study: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tuning.sweep", "--phase", "P1.2", "--trials", str(N_TRIALS),
                             "--storage", storage, "--study", study, "--no-progress", "--json", "--top", "1",
                             "--reports", "0"],
                            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_mid_trial(workers: list[subprocess.Popen], storage: str, study: str, deadline: float,
                    restart) -> int | None:
    """SIGKILL the first worker seen holding a RUNNING trial with its parameters drawn once a trial is
    COMPLETE; its index. A kill that lands after that worker told its trial (the race between reading the
    state and the signal) left nothing RUNNING behind: that worker is restarted (``restart()``) and the
    watch goes on."""
    by_pid = {w.pid: i for i, w in enumerate(workers)}
    rdb = None  # one connection pool for the whole watch, made once the workers created the schema
    while time.time() < deadline and any(w.poll() is None for w in workers):
        time.sleep(0.1)
        try:
            rdb = rdb or optuna.storages.RDBStorage(storage)
            trials = optuna.load_study(study_name=study, storage=rdb).get_trials(deepcopy=False)
        except Exception:  # noqa: BLE001 - the schema or the study is not created yet
            continue
        if not any(t.state == TrialState.COMPLETE for t in trials):
            continue
        for t in trials:
            i = by_pid.get((t.user_attrs.get("worker") or {}).get("pid"))
            # mid-trial: its parameters drawn (killed between ask and its draws, its retry would draw afresh)
            if t.state == TrialState.RUNNING and t.params and i is not None and workers[i].poll() is None:
                pid = workers[i].pid
                os.kill(pid, signal.SIGKILL)
                workers[i].wait(timeout=30)
                held = [u for u in optuna.load_study(study_name=study, storage=rdb).get_trials(deepcopy=False)
                        if u.state == TrialState.RUNNING and (u.user_attrs.get("worker") or {}).get("pid") == pid]
                if held:
                    return i
                workers[i] = restart()
                by_pid[workers[i].pid] = i
                break
    return None


def test_four_hosts_one_study_survive_a_killed_worker(services, tmp_path, monkeypatch):
    root = make_project(tmp_path / "proj")
    env, storage, study_name = _env(services["tracking_uri"]), services["storage"], "dist-P1.2"
    workers = [_worker(root, env, storage, study_name) for _ in range(N_WORKERS)]
    try:
        victim = _kill_mid_trial(workers, storage, study_name, time.time() + 120,
                                 lambda: _worker(root, env, storage, study_name))
        assert victim is not None, "no worker was caught holding a RUNNING trial"
        workers[victim] = _worker(root, env, storage, study_name)  # the "host" comes back
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
    assert failed, "the killed worker's trial was failed by the heartbeat"
    for f in failed:  # ... and retried with its parameters by Optuna's retry callback
        retries = [t for t in complete if t.system_attrs.get("failed_trial") == f.number]
        assert len(retries) == 1 and retries[0].params == f.params

    monkeypatch.setenv("MLFLOW_TRACKING_URI", services["tracking_uri"])
    runs = trial_runs(study_name)
    assert len(runs) == N_TRIALS, "one MLflow run per complete trial, no duplicate"
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags["trial_key"] for r in runs}) == N_TRIALS
    assert {t.user_attrs["result"]["mlflow_run_id"] for t in complete} == {r.info.run_id for r in runs}

    points = {tuple(sorted(t.params.items())) for t in complete}
    # tuning/sampler_streams.py keys each trial's stream by its number: no two workers share a stream
    assert len(points) == N_TRIALS, "workers on different hosts proposed the same point"


def test_the_readme_cluster_sequence_runs_as_written_from_a_shell(services, tmp_path):
    """The README's block, in bash: ``start`` while a cluster runs prints its exports, ``eval`` takes them,
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


def test_bench_distributed_runs_as_a_program(services, tmp_path):
    """``python -m tuning.bench_distributed`` end to end as a program (its own services, started and stopped)."""
    root = make_project(tmp_path / "proj")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "tuning.bench_distributed", "--trials", "1", "--workers", "1",
                           "--json"], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["local"]["trials_complete"] == out["distributed"]["trials_complete"] == 1
    assert out["overhead_ratio"] > 0 and not (root / ".cluster").exists()
