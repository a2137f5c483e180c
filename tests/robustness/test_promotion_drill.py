"""The promotion drill (issue 19 item 3): a promotion completes or rolls back as a whole, and nothing it records
is taken from a trial's artifacts.

- Killed before any of its file or MLflow operations (every rename, the intent's removal, every MLflow write),
  then any next command (a re-run, verify_authority, freeze, a sweep's start): policies/ = the last lineage entry
  = the registry version under ``authority`` = the one run tagged ``authority=current``, the ladder step is
  there, no promotion or ladder run is RUNNING (``tuning.verify_authority`` agrees on every check).
- A tampered ``J`` or ``pack`` (top level or one seed's) in ``metric_pack.json``, or a tampered ``J`` metric, is
  a witness mismatch; a refused promote writes nothing, ``REOPENED`` included.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engine.core.errors import EngineError
from engine.policies import PolicySet
from tests.tuning.conftest import make_project, seed_store
from tuning.authority.promotion import promote, read_lineage

MLFLOW_WRITES = ("create_run", "log_batch", "log_artifacts", "set_terminated", "create_logged_model",
                 "log_model_artifacts", "finalize_logged_model", "create_model_version", "set_registered_model_alias",
                 "update_registered_model", "delete_registered_model_alias")


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (no ``except Exception`` catches it)."""


@pytest.fixture(scope="module")
def proj(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("drill") / "proj")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
        seed_store(root)
        from tuning.sweep.__main__ import main
        assert main(["--no-progress", "--json", "--phase", "P1.2", "--trials", "6"]) == 0
        yield root


def _candidates() -> list[str]:
    from tuning.rank import ranked_runs
    from tuning.trail.tracking import client

    base = PolicySet.from_dir("policies").parameter_hash
    mlc = client()
    runs = [r.mlflow_run_id for r in ranked_runs("P1.2", "t-P1.2") if r.feasible and r.fidelity == "FAITHFUL"]
    return [r for r in runs if mlc.get_run(r).data.tags["parameter_hash"] != base][:2]


def _state() -> dict:
    """Everything a promotion may write: policies/ files, and the authority experiment's runs and versions."""
    from tuning.trail.tracking import client, search_all

    mlc = client()
    exp = mlc.get_experiment_by_name("authority")
    runs = sorted(r.info.run_id for r in search_all(mlc, [exp.experiment_id], "")) if exp else []
    versions = sorted(v.version for v in mlc.search_model_versions("name = 'seg3a-authority'"))
    files = {p.name: p.read_bytes() for p in Path("policies").iterdir() if p.name != ".authority.lock"}
    return {"files": files, "runs": runs, "versions": versions}


def _artifact_dir(run_id: str) -> Path:
    from tuning.trail.tracking import client

    return Path(client().get_run(run_id).info.artifact_uri.replace("file://", ""))


def _agree() -> list[dict]:
    from tuning.verify_authority import check

    results = check(Path("policies"))
    assert all(r["ok"] for r in results), [r for r in results if not r["ok"]]
    return results


# ------------------------------------------------------------------ nothing trusted that was not re-derived
@pytest.mark.parametrize("tamper", ["J", "pack", "seed_pack", "metric"])
def test_a_tampered_record_is_refused_and_nothing_is_written(proj, tamper):
    from tuning.trail.tracking import client, log_batch

    run_id = _candidates()[0]
    path = _artifact_dir(run_id) / "metric_pack.json"
    original = path.read_bytes()
    doc = json.loads(original)
    metric = client().get_run(run_id).data.metrics["J"]
    if tamper == "J":
        doc["J"] = 99.0
    elif tamper == "pack":   # the logged means over the seeds (the record's top-level metrics)
        doc["metrics"]["s4.top1_share_median"] = 0.123
    elif tamper == "seed_pack":
        doc["per_seed"][0]["pack"]["s2"]["top1_share_median_multi_tz"] = 0.5
    path.write_text(json.dumps(doc))
    if tamper == "metric":
        log_batch(client(), run_id, metrics={"J": 99.0})
    before = _state()
    try:
        with pytest.raises(EngineError) as err:
            promote(run_id, Path("policies"), decision="UNLOCK_P1_3", runs_root=None, reopen="tampering drill")
    finally:
        path.write_bytes(original)
        if tamper == "metric":
            log_batch(client(), run_id, metrics={"J": metric})
    assert err.value.code == "E3A_TUN_021_WITNESS_MISMATCH", err.value.one_line()
    assert ("MLflow metric J" if tamper == "metric" else "recorded") in err.value.cause
    assert _state() == before   # no REOPENED step, no lineage, no run, no version


# ------------------------------------------------------------------ killed anywhere, finished by the next command
def _kill_at(k: int, monkeypatch) -> list[str]:
    """Raise :class:`Killed` before the k-th file operation in policies/ or MLflow write; returns the log."""
    from mlflow import MlflowClient

    seen: list[str] = []
    inside = str(Path("policies").resolve()) + os.sep

    def deadly(name, real, counts):
        def op(*args, **kw):
            if counts(args):
                seen.append(name)
                if len(seen) == k:
                    raise Killed(name)
            return real(*args, **kw)
        return op

    for name in ("replace", "rename", "unlink"):
        monkeypatch.setattr(os, name, deadly(name, getattr(os, name),
                                             lambda a: os.path.abspath(os.fspath(a[0])).startswith(inside)))
    for name in MLFLOW_WRITES:
        monkeypatch.setattr(MlflowClient, name, deadly(name, getattr(MlflowClient, name), lambda a: True))
    return seen


def _next_command(k: int, run_id: str) -> None:
    """Any next tuning command finishes the interrupted promotion."""
    from tuning.authority.freeze import freeze
    from tuning.sweep.coordinator import Sweep
    from tuning.sweep.config import SweepConfig

    which = k % 4
    if which == 0:
        assert promote(run_id, Path("policies"), decision="UNLOCK_P1_3", runs_root=None)["status"] in (
            "PROMOTED", "ALREADY_AUTHORITY")
    elif which == 1:
        _agree()
    elif which == 2:
        with pytest.raises(EngineError) as err:   # nothing to freeze: but its lock finished the promotion first
            freeze(Path("policies"))
        assert err.value.code == "E3A_TUN_030_CERTIFY_INPUT"
    else:
        Sweep(SweepConfig(phase="P1.2", trials=1, progress=False))   # a sweep reads its base: settled first


def _target(targets: list[str]) -> str:
    """A candidate that is not the authority now (the two alternate)."""
    from tuning.trail.tracking import client

    current = PolicySet.from_dir("policies").parameter_hash
    return next(t for t in targets if client().get_run(t).data.tags["parameter_hash"] != current)


def test_a_promotion_killed_at_any_step_is_finished_by_the_next_command(proj, monkeypatch):
    from tuning.authority.txn import INTENT_FILE
    from tuning.authority.ladder_steps import read_ladder

    targets = _candidates()
    assert len(targets) == 2
    total, k = None, 0
    while total is None or k < total:
        k += 1
        target = _target(targets)
        with monkeypatch.context() as mp:
            seen = _kill_at(k, mp)
            try:
                out = promote(target, Path("policies"), decision=f"DRILL_{k}", runs_root=None, reopen="drill")
            except Killed:
                out = None
        if out is not None:   # ran to the end: every kill point was tried
            total = len(seen)
            assert out["status"] == "PROMOTED" and total >= 15, seen
            _agree()
            continue
        forward = (Path("policies") / INTENT_FILE).exists()   # killed inside the transaction
        _next_command(k, target)
        results = _agree()
        if read_lineage(Path("policies")):   # a promotion is the authority: every record of it was checked
            assert {r["check"] for r in results} >= {"lineage", "authority tag", "registry alias", "promotion run",
                                                      "ladder step", "no run left RUNNING"}
        mine = [s for s in read_ladder(Path("policies")) if s["decision"] == f"DRILL_{k}"]
        assert len(mine) == (1 if forward else 0), (k, seen[-1])   # its ladder step, once; or nothing of it
        if forward:
            assert mine[0]["source_run_id"] == target == read_lineage(Path("policies"))[-1]["mlflow_run_id"]
    assert k > 15


def test_verify_authority_reports_a_disagreement(proj, capsys):
    from tuning.common.errors import invoke
    from tuning.trail.tracking import client, log_batch
    from tuning.verify_authority import main

    if not read_lineage(Path("policies")):
        promote(_target(_candidates()), Path("policies"), decision="UNLOCK_P1_3", runs_root=None, reopen="drill")
    _agree()
    run_id = read_lineage(Path("policies"))[-1]["mlflow_run_id"]
    log_batch(client(), run_id, tags={"authority": "superseded"})   # someone untags the authority by hand
    try:
        assert invoke(main, []) == 2
        out = capsys.readouterr()
        assert "DIFFER  authority tag" in out.out
        assert out.err.startswith("E3A_TUN_028_AUTHORITY_DISAGREES: policies: authority tag:")
    finally:
        log_batch(client(), run_id, tags={"authority": "current"})
    _agree()


_SIGKILLED_PROMOTE = """
import os, sys
from mlflow import MlflowClient

k, calls = int(sys.argv[1]), [0]

def deadly(real):
    def op(*a, **kw):
        calls[0] += 1
        if calls[0] == k:
            os._exit(9)       # SIGKILL's effect: no finally, no atexit
        return real(*a, **kw)
    return op

for name in ("create_run", "set_terminated", "create_model_version", "set_registered_model_alias"):
    setattr(MlflowClient, name, deadly(getattr(MlflowClient, name)))
from tuning.common.errors import run_cli
from tuning.promote import main
run_cli(main, sys.argv[2:])
"""


def test_a_promote_process_killed_with_its_run_running_is_finished_by_verify_authority(proj):
    """As programs: the promote dies between creating its promotion run and ending it (the drill's "left
    RUNNING"); ``python -m tuning.verify_authority`` finishes every record and agrees (exit 0)."""
    import subprocess
    import sys

    from tests.tuning.conftest import env_for, run_module

    target = _target(_candidates())
    killed = subprocess.run([sys.executable, "-c", _SIGKILLED_PROMOTE, "2", target, "--runs-root", "",
                             "--decision", "KILLED_PROGRAM", "--reopen", "drill"], cwd=proj, env=env_for(proj),
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == 9, killed.stderr[-800:]
    from tuning.trail.tracking import client, search_all

    mlc = client()
    exp = mlc.get_experiment_by_name("authority").experiment_id
    assert any(r.info.status == "RUNNING" for r in search_all(mlc, [exp], "tags.run_kind = 'promotion'"))
    verify = run_module(proj, "tuning.verify_authority", timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.count("agree ") >= 7 and "DIFFER" not in verify.stdout
    assert read_lineage(Path("policies"))[-1]["mlflow_run_id"] == target
    _agree()
