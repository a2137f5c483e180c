"""``python -m tuning.bench --scale``: refusals are one coded line; a small run writes every figure beside its
target (no timed assertion: the figures are measured, not tested)."""

from __future__ import annotations

import json

import pytest

from tests.tuning.conftest import REPO, run_module
from tests.worlds.build import write_world


@pytest.mark.parametrize("args, says", [
    (["--scale"], "needs --world"),
    (["--scale", "--parts", "bogus"], "--parts"),
    (["--scale", "--parts", "default", "--runs", "0"], "--runs"),
    (["--scale", "--world", "/nonexistent/w"], "not a directory"),
    (["--scale", "--parts", "workers", "--worker-world", "/nonexistent/w"], "--worker-world"),
])
def test_bad_scale_bench_arguments_are_one_coded_line(args, says):
    out = run_module(REPO, "tuning.bench", *args, timeout=60)
    assert out.returncode == 2 and out.stderr.startswith("E3A_TUN_050_USAGE") and says in out.stderr
    assert "Traceback" not in out.stderr


def test_a_keep_directory_that_already_holds_a_bench_is_refused(tmp_path):
    """``--keep`` names where the bench writes its projects; one left there by an earlier run is not overwritten."""
    (tmp_path / "keep" / "workers-twin").mkdir(parents=True)
    out = run_module(REPO, "tuning.bench", "--scale", "--parts", "workers", "--keep", str(tmp_path / "keep"),
                     timeout=60)
    assert out.returncode == 2 and out.stderr.startswith("E3A_TUN_050_USAGE") and "workers-twin" in out.stderr
    assert "Traceback" not in out.stderr and sorted(p.name for p in (tmp_path / "keep").iterdir()) == ["workers-twin"]


@pytest.mark.slow
def test_a_small_scale_bench_reports_each_figure_beside_its_target(tmp_path):
    world = tmp_path / "w"
    write_world("tiny", world)
    out_file = tmp_path / "scale.json"
    keep = tmp_path / "keep"
    out = run_module(REPO, "tuning.bench", "--scale", "--world", str(world), "--runs", "1", "--parts", "big,workers",
                     "--worker-world", str(world), "--worker-trials", "2", "--keep", str(keep), "--out", str(out_file),
                     timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out_file.read_text())
    assert doc["targets"]["big_sweep_wall_s"] == 240.0 and doc["measured"]["big_sweep_wall_s"] > 0
    run = doc["big_world"]["runs"][0]
    assert run["complete"] + run["pruned"] == 24 and "load_before" in run
    # the workers figure on another world: measured, beside no target; the independent pair ran both sweeps,
    # each in its own project, and its ratios are what its throughput says
    w = doc["workers"]["runs"][0]
    assert doc["workers"]["world"] == str(world) and doc["meets"]["workers2_over_workers1_throughput"] is None
    assert w["ratio"] > 0 and w["pair"]["trials_per_s"] > 0
    assert w["pair_ratio"] == pytest.approx(w["pair"]["trials_per_s"] / w["w1"]["trials_per_s"], rel=5e-3)
    assert w["workers_over_pair"] == pytest.approx(w["w2"]["trials_per_s"] / w["pair"]["trials_per_s"], rel=5e-3)
    for project in ("workers", "workers-twin"):
        assert len(list((keep / project / ".optuna").glob("bench-pair-0*.journal"))) == 1, project
