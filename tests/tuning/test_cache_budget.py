"""The chain cache's byte budget follows the memory this process may use (a cgroup's limit included), split
between one sweep's processes, never below the floor; a Dask worker's objectives share one cache."""

from __future__ import annotations

import pytest

from engine import EngineError
from tuning.common import machine
from tuning.study import cache_budget
from tuning.study.cache_budget import (CACHE_BYTES_FLOOR, CACHE_GROWTH_SHARE, CACHE_MEMORY_SHARE, cache_bytes,
                                         cache_ceiling)

GIB = 1024 ** 3


def test_a_cgroup_limit_below_the_machine_is_the_memory_limit(tmp_path):
    physical = machine.memory_limit(())
    assert physical and physical > 2 * GIB   # this machine's memory (sysconf), no cgroup file read
    v2, v1, unlimited = tmp_path / "memory.max", tmp_path / "limit_in_bytes", tmp_path / "memory.high"
    v2.write_text(f"{2 * GIB}\n")
    v1.write_text(f"{3 * GIB}\n")
    unlimited.write_text("max\n")                               # cgroups v2 for "no limit"
    assert machine.memory_limit((str(v1), str(unlimited))) == min(physical, 3 * GIB)
    assert machine.memory_limit((str(v2), str(v1), str(tmp_path / "absent"))) == 2 * GIB


def test_the_budget_is_a_share_of_memory_split_between_processes_above_the_floor(monkeypatch):
    monkeypatch.delenv("SEG3A_CHAIN_CACHE_BYTES", raising=False)
    monkeypatch.setattr(cache_budget, "memory_limit", lambda: 24 * GIB)
    assert cache_bytes() == int(CACHE_MEMORY_SHARE * 24 * GIB) > CACHE_BYTES_FLOOR
    assert cache_bytes(2) == int(CACHE_MEMORY_SHARE * 12 * GIB)           # --workers 2: half each
    assert cache_bytes(16) == CACHE_BYTES_FLOOR                           # never below the floor
    assert cache_bytes(memory=16 * GIB) == int(CACHE_MEMORY_SHARE * 16 * GIB)   # a Dask worker's own limit
    monkeypatch.setattr(cache_budget, "memory_limit", lambda: 4 * GIB)       # a small container
    assert cache_bytes() == CACHE_BYTES_FLOOR
    monkeypatch.setattr(cache_budget, "memory_limit", lambda: None)          # the platform tells nothing
    assert cache_bytes() == CACHE_BYTES_FLOOR
    monkeypatch.setattr(cache_budget, "memory_limit", lambda: 24 * GIB)
    assert cache_ceiling() == int(CACHE_GROWTH_SHARE * 24 * GIB) > cache_bytes()   # grows to a third
    assert cache_ceiling(2) == int(CACHE_GROWTH_SHARE * 12 * GIB)                # split like the budget
    assert cache_ceiling(64) == CACHE_BYTES_FLOOR == cache_bytes(64)             # never below it
    # --workers 2 beside their coordinator's 3 GiB of entries: what is left of the third, split
    assert cache_ceiling(2, shared=3 * GIB) == (int(CACHE_GROWTH_SHARE * 24 * GIB) - 3 * GIB) // 2
    assert cache_ceiling(2, shared=20 * GIB) == cache_bytes(2)                   # nothing left: no growth
    monkeypatch.setenv("SEG3A_CHAIN_CACHE_BYTES", "12345")
    assert cache_bytes(4) == 12345 and cache_ceiling(4) is None                   # pinned: no growth
    monkeypatch.setenv("SEG3A_CHAIN_CACHE_BYTES", "lots")
    with pytest.raises(EngineError) as err:
        cache_bytes()
    assert err.value.code == "E3A_TUN_050_USAGE"


def test_a_workers_objectives_share_one_cache(monkeypatch):
    from engine import PolicySet
    from tuning.study.spec import load_study
    from tuning.sweep import seed_tasks

    from tests.tuning.conftest import REPO

    monkeypatch.setattr(seed_tasks, "_OBJECTIVES", {})
    seed_tasks._worker_cache.cache_clear()
    spec = load_study(REPO / "studies" / "P1.2.yaml", str(REPO / "studies"))
    base = PolicySet.from_dir(REPO / "policies")
    knobs = {"blend_lambda": 0.05, "hub_cap": 0.9, "tail_gamma": 1.0}
    a = seed_tasks.score_seed(spec, 42, base, None, 1.0, knobs)
    b = seed_tasks.score_seed(spec, 7, base, None, 1.0, knobs)
    (one, two) = seed_tasks._OBJECTIVES.values()
    assert one.cache is two.cache is seed_tasks._worker_cache() and a.identity["seed"] != b.identity["seed"]
    # outside a Dask worker: the process's own budget and ceiling
    assert (one.cache.max_bytes, one.cache.grow_to) == (cache_bytes(), cache_ceiling())


def test_a_sweeps_cache_report_counts_its_workers_and_says_so_once():
    from engine import ChainCache
    from tuning.study.cache_budget import cache_report, recomputation_note

    own = ChainCache(max_bytes=100)
    own.put("a", b"x")
    own.put("a", b"x")   # put again while still held: not a recomputation
    assert cache_report(own)["recomputed_states"] == 0 and recomputation_note(cache_report(own)) is None
    spilled = ChainCache(max_entries=1)
    for key in ("a", "b", "a"):   # "a" evicted by "b", then computed again
        spilled.put(key, key)
    alone = cache_report(spilled)
    assert alone["recomputed_states"] == 1 and "workers" not in alone
    assert recomputation_note(alone).startswith("chain cache: 1 states computed again for want of room")
    workers = [dict(cache_report(spilled), worker=i, recomputed_states=2 + i, recomputed_bytes=GIB) for i in (0, 1)]
    both = cache_report(own, workers)
    assert [w["worker"] for w in both["workers"]] == [0, 1]
    assert both["total_recomputed_states"] == 0 + 2 + 3 and both["total_recomputed_bytes"] == 2 * GIB
    note = recomputation_note(both)
    assert note.startswith("chain cache: 5 states computed again for want of room (their outputs 2.0 GiB in all, "
                           "evicted earlier) in 2 worker processes")
    assert recomputation_note(cache_report(own, [dict(w, recomputed_states=0, recomputed_bytes=0)
                                                 for w in workers])) is None
