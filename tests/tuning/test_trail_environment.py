"""MLflow's telemetry is off in every process the harness starts (tuning.trail.environment): its thread
removes a key from os.environ while a request may be reading it, which failed a sweep's log_batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tuning.trail.environment import BEFORE_MLFLOW_IMPORT, prepare_for_mlflow
from tuning.trail.process import _child_env

KEY = "MLFLOW_DISABLE_TELEMETRY"


def test_prepare_sets_what_is_unset_and_keeps_an_operators_value():
    assert prepare_for_mlflow({}) == BEFORE_MLFLOW_IMPORT
    assert prepare_for_mlflow({KEY: "false"})[KEY] == "false"


def test_the_trail_process_starts_with_telemetry_off_and_an_operators_value_wins(monkeypatch):
    monkeypatch.delenv(KEY, raising=False)        # the suite's own process has it set (tests/conftest.py)
    assert _child_env()[KEY] == "true" and KEY not in os.environ   # the child's environment, not this one's
    monkeypatch.setenv(KEY, "false")
    assert _child_env()[KEY] == "false"


def test_a_program_run_through_run_cli_imports_mlflow_without_a_telemetry_client():
    code = ("import json, os\nfrom tuning.common.errors import run_cli\n"
            "def main(argv):\n"
            "    import mlflow\n"
            "    from mlflow.telemetry.client import get_telemetry_client\n"
            "    print(json.dumps({'env': os.environ.get('" + KEY + "'), 'client': get_telemetry_client() is None}))\n"
            "    return 0\n"
            "run_cli(main)\n")
    env = {k: v for k, v in os.environ.items() if k != KEY}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"env": "true", "client": True}
