"""The bench's process-tree CPU sampler (:mod:`tuning.bench.tree_cpu`): a tree's CPU includes its grandchildren,
a process that has ended stays counted, and the span's CPU is interpolated between samples."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuning.bench import tree_cpu
from tuning.bench.tree_cpu import TreeCPU, tree_cpu_s

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="the sampler reads /proc (Linux)")

# a child that starts a grandchild burning about 0.3 CPU s, waits for it, then sleeps until killed
PARENT = ("import subprocess, sys, time; subprocess.run([sys.executable, '-c', "
          "'import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.3: pass']); "
          "print('done', flush=True); time.sleep(60)")


def test_a_tree_counts_its_grandchild_and_keeps_it_counted_once_it_has_ended():
    proc = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        seen: dict[int, float] = {}
        grandchild_seen = False
        deadline = time.time() + 60
        while time.time() < deadline:
            tree_cpu_s(proc.pid, seen)
            grandchild_seen = grandchild_seen or len(seen) > 1
            if grandchild_seen:
                break
            time.sleep(0.02)
        assert proc.stdout.readline().strip() == "done"
        total = tree_cpu_s(proc.pid, seen)   # the grandchild has ended: its last sample still counts
        assert grandchild_seen and len(seen) == 2
        assert total >= max(seen.values()) > 0
    finally:
        proc.kill()
        proc.wait()


def test_between_interpolates_between_samples_and_is_none_outside_them():
    sampler = TreeCPU.__new__(TreeCPU)
    sampler.times, sampler.cpu = [10.0, 11.0, 13.0], [1.0, 2.0, 6.0]
    assert sampler.at(10.0) == 1.0 and sampler.at(12.0) == 4.0 and sampler.at(13.0) == 6.0
    assert sampler.between(10.5, 12.5) == round(5.0 - 1.5, 3)
    assert sampler.at(9.9) is None and sampler.between(10.0, 13.5) is None


def test_a_sampler_of_a_running_process_reads_its_cpu_and_stops():
    proc = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(0.01)"])
    try:
        sampler = TreeCPU(proc.pid, interval=0.02)
        time.sleep(0.3)
        sampler.stop()
        assert len(sampler.times) >= 2 and sampler.cpu == sorted(sampler.cpu)   # CPU seconds never go down
        assert sampler.between(sampler.times[0], sampler.times[-1]) >= 0
    finally:
        proc.kill()
        proc.wait()


def test_off_linux_nothing_is_sampled(monkeypatch, tmp_path):
    monkeypatch.setattr(tree_cpu, "PROC", tmp_path / "no-proc")
    sampler = TreeCPU(1)
    sampler.stop()
    assert sampler.times == [] and sampler.between(0.0, 1.0) is None
