"""A CLI run as a program always exits: ``tuning.common.errors.exit_now`` lets the interpreter's own shutdown
order run (executors registered with ``threading._register_atexit`` stop before threads are joined), so
a pool left behind (MLflow's ``download_artifacts`` leaves one) never keeps the process alive."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.proc_table import alive, children
from tests.tuning.conftest import wait_for_runs

REPO = Path(__file__).resolve().parents[2]

_PROGRAM = """
import sys, threading
from concurrent.futures import ThreadPoolExecutor
from engine import EngineError
from tuning.common.errors import run_cli

POOLS = []

def main(argv):
    pool = ThreadPoolExecutor(2)            # never shut down: its workers end only at interpreter shutdown
    POOLS.append(pool)                      # still referenced at exit, as a library's module-level pool is
    assert pool.submit(lambda: 1).result() == 1
    done = threading.Event()
    threading.Thread(target=lambda: done.wait(0.2)).start()   # a non-daemon thread of ours: joined
    if sys.argv[1] == "refuse":
        raise EngineError("E3A_TUN_024_AUTHORITY_FROZEN", "refused with a pool left behind")
    print("done")
    return 0

run_cli(main)
"""


@pytest.mark.parametrize("path", ["refuse", "succeed"])
def test_a_program_that_leaves_an_executor_exits(tmp_path, path):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", _PROGRAM, path], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=30)
    if path == "refuse":
        assert proc.returncode == 2 and proc.stderr.strip() == \
            "E3A_TUN_024_AUTHORITY_FROZEN: refused with a pool left behind"
    else:
        assert proc.returncode == 0 and proc.stdout == "done\n", proc.stderr


def test_sigterm_is_one_coded_line_and_status_143_with_nothing_left_running(tmp_path):
    """``kill``/``timeout``/a container stop send SIGTERM: the same clean-up as Ctrl-C, one coded line, 128 + 15,
    and the sweep's trail process ends with it (it used to die silently, status -15)."""
    import shutil
    import signal
    import time

    for d in ("policies", "studies"):
        shutil.copytree(REPO / d, tmp_path / d)
    env = dict(os.environ, PYTHONPATH=str(REPO), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    # a budget no load lets it finish before the signal (400 trials did once, on a machine loaded 4 cores deep)
    proc = subprocess.Popen([sys.executable, "-m", "tuning.sweep", "--phase", "P1.2", "--trials", "5000",
                             "--no-progress"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        started = []
        while not started and time.monotonic() < deadline:   # its trail process is up
            started = children(proc.pid)
            time.sleep(0.1)
        assert wait_for_runs(tmp_path / "mlruns" / "mlflow.db", 3, proc), "no trial was logged"   # trials running
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143 and err.strip() == "E3A_CLI_005_TERMINATED: terminated (SIGTERM)", err[-3000:]
    deadline = time.monotonic() + 30
    while any(map(alive, started)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert started and not any(map(alive, started))


@pytest.mark.parametrize("sig, line, status", [("SIGINT", "E3A_CLI_002_INTERRUPTED: interrupted", 130),
                                                ("SIGTERM", "E3A_CLI_005_TERMINATED: terminated (SIGTERM)", 143)])
def test_a_signal_while_a_command_starts_is_its_one_coded_line(tmp_path, sig, line, status):
    """Ctrl-C or SIGTERM while ``python -m tuning.promote`` is still importing (MLflow: over a second) ends it with
    the coded line, not a traceback from the middle of an import (it died by the signal, -2 or -15)."""
    import signal
    import time

    env = dict(os.environ, PYTHONPATH=str(REPO), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    proc = subprocess.Popen([sys.executable, "-m", "tuning.promote", "0" * 32, "--policies", str(tmp_path)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 0.5   # still importing then (its imports take over a second)
        while time.monotonic() < deadline and not _catches_sigterm(proc.pid):   # or at once when its guard is in place
            time.sleep(0.005)
        proc.send_signal(getattr(signal, sig))
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == status and err.strip() == line, err[-3000:]


def _catches_sigterm(pid: int) -> bool:
    try:
        caught = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(int(caught.split()[1], 16) & (1 << 14))


@pytest.mark.parametrize("stop, line, status", [
    (KeyboardInterrupt, "E3A_CLI_002_INTERRUPTED: interrupted", 130),
    ("terminated", "E3A_CLI_005_TERMINATED: terminated (SIGTERM)", 143)])
def test_a_signal_wrapped_by_what_it_interrupted_is_still_its_one_coded_line(capsys, stop, line, status):
    """Ctrl-C or SIGTERM landing while an import builds a class (``__set_name__``): Python reraises the signal's
    exception as the cause of a RuntimeError. It is still the signal's status and line, not a traceback."""
    from engine.cli.wrap import Terminated, invoke

    raised = Terminated if stop == "terminated" else stop

    class Interrupting:
        def __set_name__(self, owner, name):
            raise raised()

    def main(_argv):
        type("Built", (), {"field": Interrupting()})   # RuntimeError: Error calling __set_name__ ... (3.11)

    assert invoke(main, []) == status
    assert capsys.readouterr().err.strip() == line
    assert invoke(main, [], signal_lines=False) == status and capsys.readouterr().err == ""

    def fails(_argv):
        raise RuntimeError("not a signal")

    with pytest.raises(RuntimeError):   # any other RuntimeError is not taken for one
        invoke(fails, [])
