"""One trail process, several channels (``--workers K`` forked from a sweep log through its trail process): each
channel has its own state and replies, a channel ends alone, and a trial run whose channel's process died
before the reply is deleted."""

from __future__ import annotations

import os
from multiprocessing.connection import Connection

import pytest

from tests.tuning.conftest import trial_runs
from tuning.trail.process import SweepTrail, TrailChannel, TrailError, TrailProcess


def _evaluation(project):
    from engine.policies import PolicySet
    from tuning.study.objective import SeedRobustObjective
    from tuning.study.spec import load_study

    spec = load_study(project / "studies" / "P1.2.yaml", str(project / "studies"))
    knobs = {"blend_lambda": 0.05, "hub_cap": 0.9, "tail_gamma": 1.0}
    return SeedRobustObjective(spec, [42], PolicySet.from_dir(project / "policies")).evaluate(knobs), knobs


def test_each_channel_keeps_its_own_sweep_state_and_replies(project):
    process = TrailProcess(channels=3)
    spare = process.spare()
    assert len(spare) == 2 and len(set(fd for pair in spare for fd in pair)) == 4
    one = SweepTrail("P1.2", "t-chan-a", "J", process=process)
    two = SweepTrail("P1.2", "t-chan-b", "J", process=TrailChannel.adopt(process.take_spare()))
    try:
        a = one.start_parent({}, {}, []).result(timeout=120)
        b = two.start_parent({}, {}, []).result(timeout=120)
        assert a != b   # each channel's server opened its own parent run
        for i in range(3):   # interleaved requests: each reply reaches the channel that asked
            one.log_parent({"m": float(i)})
            two.log_parent({"m": float(10 + i)})
        with pytest.raises(TrailError, match="unknown trail op"):
            two.process.call("no_such_op").result(timeout=60)
        two.finish_parent({"trials_complete": 0})
        two.close()   # one channel ends; the process goes on answering the others
        assert process.proc.poll() is None
        one.finish_parent({"trials_complete": 0}).result(timeout=60)
    finally:
        one.close()   # releases the spare channel nobody adopted: the process ends
    assert process.proc.wait(timeout=30) == 0
    from tuning.trail.tracking import client

    assert client().get_run(a).data.metrics["m"] == 2.0 and client().get_run(b).data.metrics["m"] == 12.0


def test_a_run_logged_for_a_channel_whose_process_died_is_deleted(project):
    """A forked worker SIGKILLed while the trail process logs its trial never reads the reply (its pipe has no
    reader): the run is deleted, and the other channels are not disturbed."""
    from tuning.study.trial_result import PolicyFiles, TrialResult

    ev, knobs = _evaluation(project)
    process = TrailProcess(channels=2)
    req_w, resp_r = process.take_spare()   # this test holds the spare channel's ends itself
    trail = SweepTrail("P1.2", "t-chan-dead", "J", process=process)
    try:
        parent = trail.start_parent({}, {}, []).result(timeout=120)
        requests, replies = Connection(req_w, readable=False), Connection(resp_r, writable=False)
        requests.send((0, "open", ("P1.2", "t-chan-dead", "J", parent, None)))
        assert replies.recv()[:2] == (0, True)
        replies.close()   # the worker is gone: nobody will read this channel's replies
        requests.send((1, "log_trial", (0, 0, TrialResult.from_evaluation(ev, "P1.2", "J"),
                                        PolicyFiles.of(ev.policies), knobs)))
        requests.close()
        alive = trail.log_trial(1, 1, TrialResult.from_evaluation(ev, "P1.2", "J"), PolicyFiles.of(ev.policies),
                                knobs).result(timeout=120)   # channel 0 still answers
    finally:
        trail.close()
    runs = trial_runs("t-chan-dead")
    assert [r.info.run_id for r in runs] == [alive[0]], "only the run whose reply was read is kept"
