"""Promote end to end: two promotes at once both land in order; a promote killed mid-install is
repaired by the next command; exactly one MLflow run is ``authority=current`` throughout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.policies import PolicySet
from tests.robustness.test_promote_txn import _KILLER
from tests.tuning.conftest import env_for, make_project, seed_store
from tuning.authority.promotion import read_lineage


@pytest.fixture(scope="module")
def proj(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("promote") / "proj")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
        seed_store(root)
        from tuning.sweep.__main__ import main
        assert main(["--no-progress", "--json", "--phase", "P1.2", "--trials", "5"]) == 0
        yield root


def _candidates(base_hash: str) -> list[str]:
    from tuning.rank import ranked_runs
    runs = [r for r in ranked_runs("P1.2", "t-P1.2") if r.feasible]
    from tuning.trail.tracking import client
    mlc = client()
    return [r.mlflow_run_id for r in runs if mlc.get_run(r.mlflow_run_id).data.tags["parameter_hash"] != base_hash]


def _current_runs() -> list[str]:
    from tuning.trail.tracking import client
    mlc = client()
    return [r.info.run_id for e in mlc.search_experiments()
            for r in mlc.search_runs([e.experiment_id], "tags.authority = 'current'")]


def _promote(root: Path, run_id: str, kill_at: int | None = None) -> subprocess.Popen:
    code = (_KILLER if kill_at else "import sys\n") + \
        "from tuning.promote import main\nfrom tuning.common.errors import run_cli\nrun_cli(main, sys.argv[2:])\n"
    # the copied authority is frozen (FROZEN_CERTIFIED_*): every promote here reopens it, with a reason
    return subprocess.Popen([sys.executable, "-c", code, str(kill_at or 0), run_id, "--runs-root", "", "--json",
                             "--reopen", "robustness test"],
                            cwd=root, env=env_for(root) | {"KILL_INSIDE": str(root / "policies")}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _consistent(root: Path) -> dict:
    lineage = read_lineage(root / "policies")
    assert PolicySet.from_dir(root / "policies").parameter_hash == lineage[-1]["parameter_hash"]
    assert _current_runs() == [lineage[-1]["mlflow_run_id"]]
    assert not list((root / "policies").glob(".*.tmp")) and not (root / "policies" / ".install-intent.json").exists()
    return lineage[-1]


def test_concurrent_promotes_both_land_and_policies_match_the_last_entry(proj):
    base = PolicySet.from_dir(proj / "policies").parameter_hash
    cands = _candidates(base)
    assert len(cands) >= 2, "the sweep needs two feasible non-authority candidates"
    procs = [_promote(proj, rid) for rid in cands[:2]]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    assert {json.loads(o[0])["status"] for o in outs} == {"PROMOTED"}
    lineage = read_lineage(proj / "policies")
    assert sorted(e["mlflow_run_id"] for e in lineage[-2:]) == sorted(cands[:2])   # no entry lost
    assert lineage[-1]["previous_authority"]["mlflow_run_id"] == lineage[-2]["mlflow_run_id"]
    _consistent(proj)
    from tuning.authority.ladder_steps import read_ladder
    assert sorted(s["source_run_id"] for s in read_ladder(proj / "policies")[-2:]) == sorted(cands[:2])


# P1.2 changes the alpha file: killed at its rename (every other step, the intent's removal included, is killed in
# process by tests/robustness/test_promotion_drill.py and test_promote_txn.py; here a real SIGKILL of a program)
@pytest.mark.parametrize("kill_at", [2])
def test_a_promote_killed_mid_install_is_repaired_by_the_rerun(proj, kill_at):
    base = PolicySet.from_dir(proj / "policies").parameter_hash
    target = next(r for r in _candidates(base))
    killed = _promote(proj, target, kill_at)
    killed.communicate(timeout=300)
    assert killed.returncode == 9
    assert (proj / "policies" / ".install-intent.json").exists()   # killed inside the transaction
    rerun = _promote(proj, target)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    entry = _consistent(proj)
    assert entry["mlflow_run_id"] == target
