"""The MLflow trail process: a sweep process never imports MLflow; the child answers in order, reports
its errors coded or as TrailError, and a dead child fails every pending and later request coded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from engine import EngineError
from tests.proc_table import children, cmdline
from tests.tuning.conftest import env_for, p12_evaluation, trial_runs, wait_for_runs
from tuning.common.errors import E_TRAIL, E_TRACKING
from tuning.trail.process import SweepTrail, TrailError, TrailProcess


def test_a_sweep_process_never_imports_mlflow_and_its_trail_is_complete(project):
    code = ("import json, sys\nfrom tuning.sweep.__main__ import main\n"
            "rc = main(['--phase', 'P1.2', '--trials', '3', '--json', '--no-progress'])\n"
            "print(json.dumps({'rc': rc, 'mlflow': sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow')}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=project, env=env_for(project), capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    doc, summary = json.loads(lines[-1]), json.loads("\n".join(lines[:-1]))
    assert doc == {"rc": 0, "mlflow": []}
    runs = trial_runs("t-P1.2")
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
    from tuning.trail.tracking import client

    parent = client().get_run(summary["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["pid"].isdigit() and parent.data.metrics["trials_complete"] == 3.0
    assert "anchor_engine_run_id" in parent.data.tags     # the anchor, logged through the trail


def test_requests_are_answered_in_order_and_errors_come_back(project):
    trail = SweepTrail("P1.2", "t-order", "J")
    try:
        first = trail.start_parent({"p": 1}, {"t": "x"}, ["s3.merchant_share_std_median"])
        logs = [trail.log_parent({"m": float(i)}) for i in range(5)]
        assert isinstance(first.result(timeout=120), str)
        assert [f.result(timeout=60) for f in logs] == [None] * 5
        bad = trail._process.call("no_such_op")
        with pytest.raises(TrailError, match="unknown trail op"):
            bad.result(timeout=60)
        trail.finish_parent({"trials_complete": 0})
    finally:
        trail.close()
    from tuning.trail.tracking import client

    run = client().get_run(trail.parent_run_id)
    assert run.info.status == "FINISHED" and run.data.tags["pid"].isdigit()


def test_an_unopenable_store_is_the_coded_error_of_every_request(project, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////proc/no-such-dir/mlflow.db")
    trail = SweepTrail("P1.2", "t-bad", "J")
    try:
        for future in (trail.start_parent({}, {}, []), trail.log_parent({"m": 1.0})):
            with pytest.raises(EngineError) as err:
                future.result(timeout=120)
            assert err.value.code == E_TRACKING
    finally:
        trail.close(check=False)


@pytest.mark.parametrize("start", ["spawn", "forkserver"])
def test_a_dead_trail_process_fails_pending_and_later_requests_coded(start, monkeypatch):
    monkeypatch.setenv("SEG3A_TRAIL_START", start)
    process = TrailProcess()
    process.proc.kill()
    process.proc.wait()
    pending = process.call("open", "P1.2", "t", "J", None)
    with pytest.raises(EngineError) as err:
        pending.result(timeout=30)
    assert err.value.code == E_TRAIL
    later = process.call("log_parent", {}, {})
    with pytest.raises(EngineError) as err:
        later.result(timeout=30)
    assert err.value.code == E_TRAIL
    process.close(timeout=10)


@pytest.mark.parametrize("start", ["spawn", "forkserver"])
def test_a_trail_process_asked_nothing_is_killed_at_close_and_one_asked_finishes(start, project, monkeypatch):
    monkeypatch.setenv("SEG3A_TRAIL_START", start)
    idle = TrailProcess()   # a sweep refused before its first request: MLflow's import is not waited for
    assert idle.close(timeout=60) == -signal.SIGKILL
    asked = TrailProcess()
    with pytest.raises(TrailError, match="unknown trail op"):
        asked.call("no_such_op").result(timeout=120)
    assert asked.close(timeout=60) == 0


def test_a_trial_run_logged_while_its_sweep_was_killed_is_deleted(project):
    """A sweep SIGKILLed while its trail process logs a trial's run never tells that trial: the run is deleted
    when the request ends (its retry's search for the dead attempt may have run before it existed)."""
    from tuning.study.trial_result import PolicyFiles, TrialResult
    from tuning.trail.server import TrailServer
    from tuning.trail.tracking import client

    ev, knobs = p12_evaluation(project)
    server = TrailServer()
    server.prepare()
    server.open("P1.2", "t-orphan", "J", None)
    server.start_parent({}, {})
    logged = (0, True, server.log_trial(0, 0, TrialResult.from_evaluation(ev, "P1.2", "J"),
                                         PolicyFiles.of(ev.policies), knobs))
    kept = (1, True, server.log_trial(1, 1, TrialResult.from_evaluation(ev, "P1.2", "J"),
                                       PolicyFiles.of(ev.policies), knobs))
    server.orphaned("log_trial", logged)               # the sweep died during this request
    server.orphaned("log_parent", (2, True, None))     # any other request leaves nothing to undo
    runs = {r.info.run_id: r.info.lifecycle_stage for r in trial_runs("t-orphan")}
    assert runs == {kept[2][0]: "active"}
    assert client().get_run(logged[2][0]).info.lifecycle_stage == "deleted"


def test_a_sweep_whose_trail_process_is_killed_ends_on_one_coded_line(project):
    """The trail process SIGKILLed under a running sweep (the OOM killer's choice): the trial stage that meets it
    stops the sweep with one E3A_TUN_043 line and exit 2 (it was a NameError traceback)."""
    proc = subprocess.Popen([sys.executable, "-m", "tuning.sweep", "--phase", "P1.2", "--trials", "400",
                             "--no-progress"], cwd=project, env=env_for(project), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        trail = []
        while not trail and time.monotonic() < deadline:
            trail = [pid for pid in children(proc.pid) if "tuning.trail.server" in cmdline(pid)]
            time.sleep(0.1)
        assert trail, "no trail process"
        assert wait_for_runs(project / "mlruns" / "mlflow.db", 3, proc), "no trial was logged"   # trials running
        os.kill(trail[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 2 and len(err.strip().splitlines()) == 1, err[-3000:]
    assert err.startswith("E3A_TUN_043_TRAIL:") and "Traceback" not in err
