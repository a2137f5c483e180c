"""Four sweeps started together on a fresh checkout: one MLflow store migration, all succeed,
every trial a distinct parameter point."""

from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

from tests.tuning.conftest import env_for, make_project

pytestmark = pytest.mark.slow  # four sweep processes


def test_four_sweeps_started_together_on_a_fresh_checkout(tmp_path):
    root = make_project(tmp_path / "proj")
    assert not (root / "mlruns").exists()
    argv = [sys.executable, "-m", "tuning.sweep", "--phase", "P1.2", "--trials", "6", "--no-progress", "--json"]
    procs = [subprocess.Popen(argv, cwd=root, env=env_for(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [o[1][-800:] for o in outs]
    from tuning.storage.stores import open_storage
    study = optuna.load_study(study_name="t-P1.2", storage=open_storage(
        f"journal:{root / '.optuna' / 't-P1.2.journal'}", "t-P1.2"))
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert len(done) == 6
    # every process left with the budget complete (none while another still ran its last trials), one closed it
    summaries = [json.loads(out) for out, _ in outs]
    assert [s["trials_complete"] for s in summaries] == [6] * 4, [s["trials_complete"] for s in summaries]
    closers = [s["parent_run_id"] for s in summaries if "closed_by" not in s]
    assert len(closers) == 1 and {s.get("closed_by", closers[0]) for s in summaries} == set(closers)
    points = [tuple(sorted(t.params.items())) for t in done]
    assert len(set(points)) == len(points), "two trials evaluated the same parameter point"
    assert sum(bool(t.user_attrs.get("authority_candidate")) for t in study.trials) == 1
