"""A CLI run as a program always exits: ``tuning.common.errors.exit_now`` lets the interpreter's own shutdown
order run (executors registered with ``threading._register_atexit`` stop before threads are joined), so
a pool left behind (MLflow's ``download_artifacts`` leaves one) never keeps the process alive."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
