"""``python -m tuning.sweep --cluster local:K|tcp://…`` (each seed's chain a Dask task) and ``--workers``:
refusals are one coded line; a cluster sweep records what the local objective computes, byte for byte."""

from __future__ import annotations

import json

import optuna
import pytest
import yaml

from engine.policies import PolicySet
from tests.tuning.conftest import REPO, make_project, run_module, seed_store
from tuning.study.objective import SeedRobustObjective, deterministic_view
from tuning.study.spec import parse_study


@pytest.mark.parametrize("args, says", [
    (["--workers", "0"], "--workers 0 outside [1, 64]"),
    (["--cluster", "bogus"], "--cluster must be local:K"),
    (["--cluster", "local:0"], "--cluster must be local:K"),
    (["--cluster", "local:2", "--workers", "2"], "use it without --workers"),
])
def test_bad_workers_or_cluster_is_one_coded_line(tmp_path, args, says):
    root = make_project(tmp_path / "proj")
    out = run_module(root, "tuning.sweep", "--phase", "P1.2", *args, timeout=60)
    assert out.returncode == 2 and out.stderr.startswith("E3A_TUN_050_USAGE") and says in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (root / ".optuna").exists()


def test_an_unreachable_scheduler_is_one_coded_line_and_writes_nothing(tmp_path):
    """A scheduler address nobody listens on: said at once (not after Dask's 30 s of retries), before the study's
    journal or any MLflow run is written (it left an empty journal and a FAILED parent run)."""
    import socket

    with socket.socket() as s:   # a loopback port that was free a moment ago: connections to it are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = make_project(tmp_path / "proj")
    out = run_module(root, "tuning.sweep", "--phase", "P1.2", "--trials", "2", "--no-progress",
                     "--cluster", f"tcp://127.0.0.1:{port}", timeout=60)
    assert out.returncode == 2 and out.stderr.startswith("E3A_CLI_004_CLUSTER_UNREACHABLE"), out.stderr[-2000:]
    assert f"tcp://127.0.0.1:{port}" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (root / ".optuna").exists() and not (root / "mlruns").exists()


@pytest.mark.slow
def test_a_cluster_sweep_scores_each_seed_as_the_local_objective_does(tmp_path):
    root = make_project(tmp_path / "proj")
    seed_store(root)
    doc = yaml.safe_load((REPO / "studies" / "P3.yaml").read_text())
    doc.update(trials=3, study="t-P3c", seeds=[42, 7])
    (root / "studies" / "P3.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    out = run_module(root, "tuning.sweep", "--phase", "P3", "--force", "--no-progress", "--json", "--reports", "0",
                     "--cluster", "local:2", timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["trials_complete"] == 3
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(root / ".optuna" / "t-P3c.journal")))
    trials = optuna.load_study(study_name="t-P3c", storage=storage).trials
    spec = parse_study(doc, str(root / "studies" / "P3.yaml"))
    local = SeedRobustObjective(spec, spec.seeds, PolicySet.from_dir(root / "policies"))
    for t in trials:
        ev = local.evaluate({k.name: k.value if k.fixed else t.params[k.name] for k in spec.knobs})
        assert t.value == ev.value and t.user_attrs["result"]["verdict"] == ev.verdict
        assert t.user_attrs["result"]["engine_run_id"] == deterministic_view(ev.pack, ev.identity)["identity"]["run_id"]
