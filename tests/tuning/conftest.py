"""Fixtures for the harness tests: a throw-away project root (studies/, policies/, MLflow, Optuna)."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REQUIRED_TRIAL_TAGS = ("phase", "engine_run_id", "seed", "parameter_hash", "manifest_fingerprint",
                       "digest.country_zone_alphas", "digest.zone_floor_policy", "digest.zone_mixture_policy",
                       "veto", "veto_reasons", "optuna_trial", "study", "sweep_run_id")

# a small, fast P1.2 study: few start-up trials so TPE kicks in, one seed; its ranges stay where most candidates of
# the committed authority are FAITHFUL (on it, blend_lambda 0.03 or hub_cap 0.85 over-serve a clock: 3A-F07;
# blend_lambda 0.01 with hub_cap 0.94 misses F04 or F07 on seed 42)
SMALL_STUDY = """
phase: P1.2
study: t-P1.2
base_policies: policies
seeds: [42]
trials: 6
sampler: {name: tpe, seed: 7, n_startup_trials: 3, multivariate: true}
knobs:
  - {name: blend_lambda, low: 0.0, high: 0.008}
  - {name: hub_cap, low: 0.96, high: 1.0}
  - {name: tail_gamma, value: 1.0}
objective:
  name: J
  terms:
    - {name: d_top1, metric: s2.top1_share_median_multi_tz, direction: down, weight: 0.45}
    - {name: d_tail, metric: s2.share_top1_ge_099_multi_tz, direction: down, weight: 0.35}
    - {name: d_multi_zone, metric: s4.escalated_multi_zone_rate, direction: up, weight: 0.20}
vetoes:
  structural: [s6_pass, s7_pass, conservation, schema, realism_floors, fidelity]
"""


def make_project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "policies", root / "policies",
                    ignore=shutil.ignore_patterns("lineage.yaml", ".*"))
    (root / "studies").mkdir()
    (root / "studies" / "P1.2.yaml").write_text(SMALL_STUDY)
    forced = SMALL_STUDY.replace("study: t-P1.2", "study: t-veto").replace(
        "  structural: [s6_pass, s7_pass, conservation, schema, realism_floors, fidelity]",
        "  structural: [s6_pass, s7_pass, conservation, schema, realism_floors, fidelity]\n"
        "  guardrails:\n    - {metric: s4.top1_share_median, op: '<=', value: 0.0, reason: FORCED_VETO}")
    (root / "studies" / "veto.yaml").write_text(forced)
    return root


_STORE_TEMPLATE: list[Path] = []   # this test process's empty, migrated MLflow store


def seed_store(root: Path) -> Path:
    """``root/mlruns/mlflow.db``: an empty MLflow store, copied from one this test process created and migrated
    once. MLflow runs its alembic migrations on every fresh store, about a second of CPU each; the tests that are
    about a fresh store (tests/robustness/test_fresh_store.py, the read-only mounts) create theirs."""
    if not _STORE_TEMPLATE:
        from tuning.trail.tracking import client

        template = Path(tempfile.mkdtemp(prefix="seg3a-test-store-"))
        atexit.register(shutil.rmtree, template, ignore_errors=True)
        client(f"sqlite:///{template / 'mlflow.db'}")
        _STORE_TEMPLATE.append(template / "mlflow.db")
    (root / "mlruns").mkdir()
    shutil.copyfile(_STORE_TEMPLATE[0], root / "mlruns" / "mlflow.db")
    return root / "mlruns" / "mlflow.db"


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = make_project(tmp_path / "proj")
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    seed_store(root)
    return root


def env_for(root: Path) -> dict:
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_module(root: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=root, env=env_for(root), capture_output=True,
                          text=True, timeout=timeout)


def run_here(root: Path, module: str, *args: str, program: bool = False, timeout: float = 240):
    """``python -m module args`` in ``root`` on its store: as a program (``run_module``), or in this process through
    the same ``main`` and wrapper (stdout, stderr and the exit status alike), for a command's many refusal cases."""
    import contextlib
    import importlib
    import io
    from types import SimpleNamespace

    from tuning.common.errors import invoke

    if program:
        return run_module(root, module, *args, timeout=timeout)
    entry = importlib.import_module(module)
    main = getattr(entry, "main", None) or importlib.import_module(module + ".__main__").main
    out, err, saved = io.StringIO(), io.StringIO(), os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = env_for(root)["MLFLOW_TRACKING_URI"]
    try:
        with contextlib.chdir(root), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = invoke(main, list(args))
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def trial_runs(study: str | None = None, phase: str = "P1.2") -> list:
    from tuning.trail.tracking import client, search_all
    mlc = client()
    exp = mlc.get_experiment_by_name(f"3A-{phase}")
    flt = "tags.run_kind = 'trial'" + (f" and tags.study = '{study}'" if study else "")
    return search_all(mlc, [exp.experiment_id], flt) if exp else []


def load(study: str):
    import optuna
    from tuning.storage.stores import open_storage
    return optuna.load_study(study_name=study, storage=open_storage(None, study))


def p12_evaluation(root: Path, knobs: dict | None = None, seeds=(42,)):
    """A P1.2 candidate (``knobs``; by default a fixed one) evaluated in ``root``'s project as a trial is, on
    ``seeds`` (None: the study's), and its knobs."""
    from engine.policies import PolicySet
    from tuning.study.objective import SeedRobustObjective
    from tuning.study.spec import load_study

    spec = load_study(root / "studies" / "P1.2.yaml", str(root / "studies"))
    knobs = knobs if knobs is not None else {"blend_lambda": 0.05, "hub_cap": 0.9, "tail_gamma": 1.0}
    seeds = list(spec.seeds if seeds is None else seeds)
    return SeedRobustObjective(spec, seeds, PolicySet.from_dir(root / "policies")).evaluate(knobs), knobs


def wait_for_runs(store: Path, count: int, proc, timeout: float = 120.0) -> bool:
    """Wait until the sqlite MLflow store ``store`` holds ``count`` runs (a sweep's trials are running and logged)
    while ``proc`` runs; True once it does. Reads the file read-only: the sweep's trail process writes it."""
    import sqlite3

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1) as db:
                if db.execute("select count(*) from runs").fetchone()[0] >= count:
                    return True
        except sqlite3.Error:   # not created, or not migrated yet
            pass
        time.sleep(0.1)
    return False
