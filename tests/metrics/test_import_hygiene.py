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


def test_a_usage_error_answers_before_mlflow_the_engine_or_optuna_load():
    """A certify, promote, prune, rank or sweep whose arguments are refused says so before loading MLflow, the engine's
    chain or Optuna (about 1.5 CPU s each)."""
    code = ("import sys\nfrom tuning.common.errors import invoke\n"
            "from tuning.certify import main as certify\nfrom tuning.promote import main as promote\n"
            "from tuning.sweep.__main__ import main as sweep\nfrom tuning.rank import main as rank\n"
            "from tuning.prune import main as prune\n"
            "codes = [invoke(certify, ['--seeds', '42,42']), invoke(certify, ['--holdout', '-3']), invoke(promote, []),"
            " invoke(sweep, ['--phase', 'P1.2', '--workers', '0']), invoke(rank, ['--phase', 'P1.2', '--top', '-1']),"
            " invoke(prune, ['--bogus'])]\n"
            "print(codes, sorted({m.split('.')[0] for m in sys.modules} & {'mlflow', 'optuna', 'pandas', 'scipy'}))")
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root,
                          env=env)
    assert proc.stdout.strip() == "[2, 2, 2, 2, 2, 2] []", proc.stdout + proc.stderr[-2000:]
