"""How a trail process starts (tuning.trail.launch): a process's first trail is a fresh interpreter, its later ones
are forked by the forkserver; a forked trail works in the caller's environment and directory of the moment, and
either kind ends when the sweep process is SIGKILLed (its life pipe), though a forked trail's parent is the
forkserver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from engine import EngineError
from tests.proc_table import alive, parent_of
from tests.tuning.conftest import env_for, make_project, seed_store
from tuning.common.errors import E_USAGE
from tuning.trail import launch
from tuning.trail.process import SweepTrail, TrailProcess


def test_the_first_trail_of_a_process_is_spawned_and_the_later_ones_forked(monkeypatch):
    monkeypatch.setattr(launch, "_STARTED", {})
    monkeypatch.delenv(launch.START_ENV, raising=False)
    assert [launch.start_method() for _ in range(3)] == ["spawn", "forkserver", "forkserver"]
    monkeypatch.setattr(launch, "_STARTED", {os.getpid() + 1: 5})   # another (forking) process's count is not ours
    assert launch.start_method() == "spawn"
    monkeypatch.setenv(launch.START_ENV, "spawn")
    assert launch.start_method() == "spawn"
    monkeypatch.setenv(launch.START_ENV, "forkserver")
    monkeypatch.setattr(launch, "_STARTED", {})
    assert launch.start_method() == "forkserver"
    monkeypatch.setenv(launch.START_ENV, "thread")
    with pytest.raises(EngineError) as err:
        launch.start_method()
    assert err.value.code == E_USAGE and "expected spawn or forkserver" in err.value.cause


def test_a_forked_trail_logs_where_the_caller_is_now_not_where_the_forkserver_started(tmp_path, monkeypatch):
    monkeypatch.setenv(launch.START_ENV, "forkserver")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{elsewhere / 'no-store.db'}")
    TrailProcess().close(timeout=120)   # the forkserver runs (started here, or by an earlier test)
    root = make_project(tmp_path / "proj")
    seed_store(root)
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    trail = SweepTrail("P1.2", "t-forked", "J")
    try:
        assert parent_of(trail.process.proc.pid) != os.getpid()   # forked by the forkserver, not by this process
        run_id = trail.start_parent({}, {}, []).result(timeout=120)
        trail.finish_parent({"trials_complete": 0}).result(timeout=120)
    finally:
        trail.close()
    assert trail.process.proc.wait(timeout=30) == 0
    from tuning.trail.tracking import client
    assert client().get_run(run_id).data.tags["study"] == "t-forked"
    assert not (elsewhere / "no-store.db").exists()


PROGRAM = """
import time
from tuning.trail.process import TrailProcess
first, second = TrailProcess(), TrailProcess()
print(first.proc.pid, second.proc.pid, flush=True)
time.sleep(600)
"""


def test_an_unguarded_script_spawns_every_trail(project, tmp_path):
    """multiprocessing would re-run a script given by its path in a forkserver child (its second trail crashed:
    RuntimeError, bootstrapping phase): such a process spawns every trail; ``-c`` forks from its second."""
    probe = "from tuning.trail import launch\nprint(launch.start_method(), launch.start_method())\n"
    script = tmp_path / "two_trails.py"
    script.write_text(probe)
    env = env_for(project)
    env.pop(launch.START_ENV, None)
    for argv, want in (([str(script)], "spawn spawn"), (["-c", probe], "spawn forkserver")):
        out = subprocess.run([sys.executable, *argv], cwd=project, env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and out.stdout.strip() == want, (argv, out.stdout, out.stderr[-2000:])


def test_a_sigkilled_sweep_process_ends_its_spawned_and_its_forked_trail(project):
    env = env_for(project)
    env.pop(launch.START_ENV, None)
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM], cwd=project, env=env, stdout=subprocess.PIPE, text=True)
    try:
        spawned, forked = (int(x) for x in proc.stdout.readline().split())
        server = parent_of(forked)   # the forkserver, which ends with the process that started it
        assert parent_of(spawned) == proc.pid and server != proc.pid and parent_of(server) == proc.pid
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 60
        while any(map(alive, (spawned, forked, server))) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [alive(spawned), alive(forked), alive(server)] == [False, False, False]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
