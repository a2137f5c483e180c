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
    """A command whose arguments are refused says so before loading MLflow, the engine's chain or Optuna (0.3-1.5
    CPU s each): certify, promote, prune, rank, sweep, freeze, author, campaign, dashboard, runtime, report, baseline,
    results, compare."""
    refusals = {"tuning.certify": [["--seeds", "42,42"], ["--holdout", "-3"]], "tuning.promote": [[]],
                "tuning.sweep.__main__": [["--phase", "P1.2", "--workers", "0"]],
                "tuning.rank": [["--phase", "P1.2", "--top", "-1"]], "tuning.prune": [["--bogus"]],
                "tuning.freeze": [["--target", "PASS_A"]], "tuning.author": [[]],
                "tuning.campaign.__main__": [["rerun"]], "tuning.dashboard": [["--phase", "P1.2", "--port", "0"]],
                "tuning.runtime.__main__": [[]], "tuning.report.__main__": [[]],
                "tuning.baseline.__main__": [["--seed", "x"]], "tuning.compare": [[]],
                "tuning.results": [["--write", "R.md", "--check", "R.md"]]}
    code = ("import importlib, sys\nfrom tuning.common.errors import invoke\n"
            f"codes = [invoke(importlib.import_module(m).main, a) for m, cases in {refusals!r}.items() for a in cases]\n"
            "print(codes, sorted({m.split('.')[0] for m in sys.modules} & {'mlflow', 'optuna', 'pandas', 'scipy'}))")
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root,
                          env=env)
    assert proc.stdout.strip() == f"{[2] * sum(map(len, refusals.values()))} []", proc.stdout + proc.stderr[-2000:]
