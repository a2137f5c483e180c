"""The close's plotting stack (Optuna's plots and importances, plotly's figures and templates) is loaded by a trail
process only when its sweep may close the study soon: at once on this host's own storage and
in the parent of ``--workers K``, near the process's own end on a storage hosts share, never in a spawned
worker."""

from __future__ import annotations

import time
from types import SimpleNamespace

from hypothesis import given, strategies as st

from tuning.sweep.workers import TrialLoop, close_is_near
from tuning.trail.process import SweepTrail


def test_close_is_near_when_this_process_share_of_the_rest_fits_in_the_lead():
    assert not close_is_near(0, 0, 1, None)                   # no pace yet: nothing to go by
    assert close_is_near(10, 0, 1, 0.1)                       # (1 + 10) * 0.1 = 1.1 s
    assert not close_is_near(100, 0, 1, 0.1)                  # 10.1 s
    assert close_is_near(100, 4, 1, 0.1)                      # (1 + 100 / 5) * 0.1 = 2.1 s: four others share it
    assert not close_is_near(0, 0, 2, 2.0)                    # two untold trials of 2 s each: 4 s > 3 s
    assert close_is_near(0, 0, 2, 2.0, lead_s=4.0)
    assert close_is_near(29, 0, 1, 0.1) and not close_is_near(31, 0, 1, 0.1)   # 3.0 s against 3.2 s


@given(st.integers(0, 500), st.integers(0, 8), st.integers(0, 3), st.floats(0.001, 30), st.integers(1, 50))
def test_more_work_is_never_nearer_and_more_hands_never_farther(unasked, others, own, pace, more):
    near = close_is_near(unasked, others, own, pace)
    if close_is_near(unasked + more, others, own, pace):
        assert near
    if near:
        assert close_is_near(unasked, others + more, own, pace)
        assert close_is_near(unasked, others, own, pace / (1 + more))


class _Trail:
    def __init__(self) -> None:
        self.warmed = 0

    def warm_close(self) -> None:
        self.warmed += 1


def _loop(may_close: bool, target: int, seen: tuple[int, int], evaluated: int, elapsed: float, rdb: bool = True):
    coordinator = SimpleNamespace(seen=seen, rdb=rdb)
    trail = _Trail()
    loop = TrialLoop(SimpleNamespace(coordinator=coordinator, target=target), trail, may_close=may_close)
    loop.evaluated = evaluated
    if evaluated:
        loop.started = time.perf_counter() - elapsed
    return loop, trail


def test_a_host_on_a_shared_storage_asks_for_the_close_imports_only_near_its_end():
    # 40 trials, 10 done, 2 RUNNING (one of them ours), 10 asked by us in 1 s: 0.1 s a trial
    loop, trail = _loop(True, 40, (10, 2), evaluated=10, elapsed=1.0)
    loop._warm_close_when_due(True, 1)    # (2 + 27 / 2) * 0.1 = 1.55 s <= 3 s
    assert trail.warmed == 1
    loop, trail = _loop(True, 400, (10, 2), evaluated=10, elapsed=1.0)
    loop._warm_close_when_due(True, 1)    # (2 + 387 / 2) * 0.1 = 19.6 s: not yet
    assert trail.warmed == 0
    loop, trail = _loop(True, 40, (10, 2), evaluated=0, elapsed=0.0)
    loop._warm_close_when_due(True, 0)    # its first ask: no pace yet
    assert trail.warmed == 0


def test_a_spawned_worker_never_loads_the_close():
    loop, trail = _loop(False, 40, (39, 1), evaluated=30, elapsed=1.0)
    loop._warm_close_when_due(False, 1)
    assert trail.warmed == 0
    loop, trail = _loop(False, 40, (0, 0), evaluated=0, elapsed=0.0, rdb=False)
    loop._warm_close_when_due(True, 0)
    assert trail.warmed == 0


def test_a_process_on_its_own_storage_asks_at_its_first_ask():
    loop, trail = _loop(True, 400, (0, 0), evaluated=0, elapsed=0.0, rdb=False)
    loop._warm_close_when_due(True, 0)     # no pace yet, far from the end: it closes the study all the same
    assert trail.warmed == 1


def test_the_trail_process_loads_the_close_once_and_only_when_asked(project):
    trail = SweepTrail("P1.2", "t-warm", "J")
    try:
        trail.start_parent({}, {}, []).result(timeout=120)
        # the parent run does not start the warm-up: the first request for it does, and it is sent once
        trail.warm_close()
        asked = trail._unwatched[-1]
        trail.warm_close()
        assert trail._unwatched[-1] is asked
        assert asked.result(timeout=60) is True
        assert trail._process.call("warm_close").result(timeout=60) is False   # a second request starts nothing
        trail.finish_parent({"trials_complete": 0})
    finally:
        trail.close()
