"""``python -m tuning.bench --scale``: refusals are one coded line; a small run writes every figure beside its
target (no timed assertion: the figures are measured, not tested)."""

from __future__ import annotations

import json
import os

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
    """The big-world part end to end as a program (its sweep, search and full stages, cold chain); the workers
    part's processes are those of ``tuning.sweep --workers`` (tests/tuning/test_crash_and_workers.py), its
    arithmetic is the next test's."""
    world = tmp_path / "w"
    write_world("tiny", world)
    out_file = tmp_path / "scale.json"
    out = run_module(REPO, "tuning.bench", "--scale", "--world", str(world), "--runs", "1", "--parts", "big",
                     "--big-trials", "8", "--keep", str(tmp_path / "keep"), "--out", str(out_file), timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out_file.read_text())
    assert doc["targets"]["big_sweep_wall_s"] == 240.0 and doc["measured"]["big_sweep_wall_s"] > 0
    assert doc["meets"]["big_sweep_wall_s"] is None   # 8 trials: measured, beside no target (the target's are 24)
    run = doc["big_world"]["runs"][0]
    assert run["complete"] + run["pruned"] == 8 == doc["big_world"]["trials"] and "load_before" in run
    assert "workers" not in doc and doc["meets"]["workers2_over_workers1_throughput"] is None


def test_the_workers_part_runs_each_sweep_as_asked_and_reports_throughput_ratios(tmp_path, monkeypatch):
    """``workers()`` with the sweeps replaced by their results: one process, ``--workers 2``, and the independent
    pair (both sweeps started before either is waited for, each in its own project); the ratios are what the
    throughputs say, beside no target on a world that is not the 100x one."""
    import datetime as dt

    from tuning.bench import scale

    t0 = dt.datetime(2026, 1, 1)
    spans = {1: 10.0, 2: 6.0}   # seconds the trials of one process / of --workers 2 span
    calls, started = [], []

    def swept(span: float, done: int = 4) -> dict:
        return {"wall_s": span + 2.0, "done": done, "first": t0, "last": t0 + dt.timedelta(seconds=span),
                "trials": [], "summary": {}}

    class Finished:   # a sweep process that has exited
        pid = 0

        def poll(self):
            return 0

    def start(root, *args):
        calls.append((root.name, args))
        started.append(root.name)
        return (Finished(), args)

    def finish(handle):
        args = handle[1]
        if "bench-pair" in args[args.index("--study") + 1]:
            assert started[-2:] == ["workers", "workers-twin"], "the pair's second sweep starts before the first ends"
            return ("out", 7.0)
        return ("out", spans[int(args[args.index("--workers") + 1])])

    class Sampler:   # the process tree's CPU: 1.5 s a second of the span in one process, 2 in --workers 2
        rates = iter([1.5, 2.0, 0.9, 0.9])

        def __init__(self, pid):
            self.rate = next(Sampler.rates)

        def stop(self):
            pass

        def between(self, t0, t1):
            return self.rate * (t1 - t0)

    monkeypatch.setattr(scale, "_swept", lambda root, finished: swept(finished[1]))
    monkeypatch.setattr(scale, "_authority", lambda root, world: root / "authority")
    monkeypatch.setattr(scale, "_children_cpu_s", iter([0.0, 15.0, 15.0, 30.0, 30.0, 50.0]).__next__)
    monkeypatch.setattr(scale, "TreeCPU", Sampler)
    monkeypatch.setattr(scale, "H", {"start": start, "finish": finish, "project": lambda root: root})
    out = scale.workers(tmp_path, 1, 4, tmp_path / "w")
    assert [c[0] for c in calls] == ["workers", "workers", "workers", "workers-twin"]
    assert [c[1][c[1].index("--workers") + 1] for c in calls] == ["1", "2", "1", "1"]
    (row,) = out["runs"]
    assert row["w1"]["trials_per_s"] == 0.4 and row["w2"]["trials_per_s"] == round(4 / 6, 3)
    assert row["pair"]["trials_per_s"] == round(8 / 7, 3)   # both sweeps' trials over the span of both
    assert row["ratio"] == round((4 / 6) / 0.4, 3) and row["pair_ratio"] == round((8 / 7) / 0.4, 3)
    assert row["workers_over_pair"] == round((4 / 6) / (8 / 7), 3)
    assert row["w1"]["cores_busy"] == round(15.0 / 12.0, 2) and row["w1"]["cpu_s"] == 15.0
    # the trial span's CPU: one process 1.5 cores over 10 s (15 s, 3.75 a trial), two workers 2 over 6 s (12 s, 3 a
    # trial), the pair 0.9 + 0.9 over the 7 s of both (12.6 s for 8 trials)
    assert row["span_cores_busy"] == 1.5 and row["span_ratio_ceiling"] == round((os.cpu_count() or 1) / 1.5, 3)
    assert row["cpu_s_per_trial"] == {"w1": 3.75, "w2": 3.0, "pair": round(12.6 / 8, 3)}
    assert row["trial_cpu_w2_over_w1"] == round(3.0 / 3.75, 3) and out["span_cores_busy"]["median"] == 1.5
    assert out["ratio"]["median"] == row["ratio"] and out["world"] == str(tmp_path / "w")
