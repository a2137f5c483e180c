"""Import hygiene: engine never imports the harness, Optuna, MLflow or plotly.

Speed is measured by `python -m engine bench` / `python -m tuning.bench`, never asserted here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_engine_metrics_never_imports_the_harness():
    code = ("import sys, engine.metrics, engine.chain.runner, engine.publish.store, engine.cli.main; bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('optuna', 'mlflow', 'tuning', 'plotly')); print(bad); sys.exit(1 if bad else 0)")
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root,
                          env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
