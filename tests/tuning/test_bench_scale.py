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
])
def test_bad_scale_bench_arguments_are_one_coded_line(args, says):
    out = run_module(REPO, "tuning.bench", *args, timeout=60)
    assert out.returncode == 2 and out.stderr.startswith("E3A_TUN_050_USAGE") and says in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_a_small_scale_bench_reports_each_figure_beside_its_target(tmp_path):
    world = tmp_path / "w"
    write_world("tiny", world)
    out_file = tmp_path / "scale.json"
    out = run_module(REPO, "tuning.bench", "--scale", "--world", str(world), "--runs", "1", "--parts", "big",
                     "--keep", str(tmp_path / "keep"), "--out", str(out_file), timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out_file.read_text())
    assert doc["targets"]["big_sweep_wall_s"] == 240.0 and doc["measured"]["big_sweep_wall_s"] > 0
    run = doc["big_world"]["runs"][0]
    assert run["complete"] + run["pruned"] == 24 and "load_before" in run
