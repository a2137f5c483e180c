"""tuning.bench: the harness against its hand-written peer on the same points, figures beside targets."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.tuning.conftest import REPO, env_for, make_project, run_module

pytestmark = pytest.mark.slow


def test_peer_scores_the_points_it_is_given_with_the_harness_scoring(tmp_path):
    root = make_project(tmp_path / "proj")
    (root / "mlruns").mkdir()
    points = [{"blend_lambda": 0.0, "hub_cap": 1.0}, {"blend_lambda": 0.1, "hub_cap": 0.9}]
    (root / "points.json").write_text(json.dumps(points))
    out = run_module(root, "tuning.bench_peer", "--phase", "P1.2", "--points", "points.json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["params"] == points and doc["trials"] == 2 and doc["chain_s"] > 0

    from engine.policies import PolicySet
    from tuning.objective import SeedRobustObjective
    from tuning.study_spec import load_study
    spec = load_study(root / "studies" / "P1.2.yaml")
    obj = SeedRobustObjective(spec, spec.seeds, PolicySet.from_dir(root / "policies"))
    assert doc["J"] == [obj.evaluate({**p, "tail_gamma": 1.0}).value for p in points]
    from mlflow import MlflowClient  # MLflowCallback logged one run per trial into the project's store
    mlc = MlflowClient(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    runs = mlc.search_runs([mlc.get_experiment_by_name("bench-peer").experiment_id])
    assert sorted(r.data.metrics["J"] for r in runs) == sorted(doc["J"])


def test_bench_reports_paired_rounds_and_targets(tmp_path):
    from tuning.bench import TARGETS

    done = subprocess.run([sys.executable, "-m", "tuning.bench", "--json", "--sweep-trials", "2", "--peer-trials", "3",
                           "--rounds", "2", "--keep", str(tmp_path / "bench")], cwd=REPO, env=env_for(tmp_path),
                          capture_output=True, text=True, timeout=600)   # as a program, from the project root
    assert done.returncode == 0, done.stderr[-800:]
    result = json.loads(done.stdout)
    peer = result["peer"]
    assert [r["order"] for r in peer["rounds"]] == [["harness", "peer"], ["peer", "harness"]]
    assert peer["max_abs_J_difference"] == 0.0  # same points, same scoring: the same J
    for r in peer["rounds"]:
        assert r["ratio"] == pytest.approx(r["harness"]["wall_s"] / r["peer"]["wall_s"], rel=0.01)
        assert r["harness"]["fixed_s"] < r["harness"]["wall_s"] and r["peer"]["trial_chain_mean_s"] > 0
    assert set(result["measured"]) == set(TARGETS) == set(result["meets"])
    assert result["meets"]["peer_ratio"] == (peer["ratio_median"] <= TARGETS["peer_ratio"])
    assert result["sweep"]["trials"] == 2 and result["certify"]["seeds"] == [42, 7, 101, 202]
    assert result["measured"]["sweep_200_wall_s"] == result["sweep"]["projected_200_s"]
