"""One trail process, several channels (``--workers K`` forked from a sweep log through its trail process): each
channel has its own state and replies, a channel ends alone, and a trial run whose channel's process died
before the reply is deleted."""

from __future__ import annotations

from multiprocessing.connection import Connection

import pytest

from tests.tuning.conftest import p12_evaluation, trial_runs
from tuning.trail.process import SweepTrail, TrailChannel, TrailError, TrailProcess


def test_each_channel_keeps_its_own_state_and_a_dead_channels_run_is_deleted(project):
    """Channels 0 and 1 are two sweeps' sides (own parent runs, interleaved requests, own replies); channel 2's
    process is gone before the reply of its trial's run (a SIGKILLed worker: nobody reads its replies), so that
    run is deleted and the others are not disturbed; channel 3 is never adopted and is released at the close."""
    from tuning.study.trial_result import PolicyFiles, TrialResult
    from tuning.trail.tracking import client

    ev, knobs = p12_evaluation(project)
    process = TrailProcess(channels=4)
    spare = process.spare()
    assert len(spare) == 3 and len(set(fd for pair in spare for fd in pair)) == 6
    one = SweepTrail("P1.2", "t-chan-a", "J", process=process)
    two = SweepTrail("P1.2", "t-chan-b", "J", process=TrailChannel.adopt(process.take_spare()))
    req_w, resp_r = process.take_spare()   # this test plays the worker that dies
    try:
        a = one.start_parent({}, {}, []).result(timeout=120)
        b = two.start_parent({}, {}, []).result(timeout=120)
        assert a != b   # each channel's server opened its own parent run
        for i in range(3):   # interleaved requests: each reply reaches the channel that asked
            one.log_parent({"m": float(i)})
            two.log_parent({"m": float(10 + i)})
        with pytest.raises(TrailError, match="unknown trail op"):
            two.process.call("no_such_op").result(timeout=60)
        requests, replies = Connection(req_w, readable=False), Connection(resp_r, writable=False)
        requests.send((0, "open", ("P1.2", "t-chan-a", "J", a, None)))
        assert replies.recv()[:2] == (0, True)
        replies.close()   # the worker is gone
        requests.send((1, "log_trial", (0, 0, TrialResult.from_evaluation(ev, "P1.2", "J"),
                                        PolicyFiles.of(ev.policies), knobs)))
        requests.close()
        two.finish_parent({"trials_complete": 0})
        two.close()   # one channel ends; the process goes on answering the others
        assert process.proc.poll() is None
        alive = one.log_trial(1, 1, TrialResult.from_evaluation(ev, "P1.2", "J"), PolicyFiles.of(ev.policies),
                              knobs).result(timeout=120)
        one.finish_parent({"trials_complete": 0}).result(timeout=60)
    finally:
        one.close()   # releases the spare channel nobody adopted: the process ends
    assert process.proc.wait(timeout=30) == 0
    assert client().get_run(a).data.metrics["m"] == 2.0 and client().get_run(b).data.metrics["m"] == 12.0
    assert [r.info.run_id for r in trial_runs("t-chan-a")] == [alive[0]], "only the run whose reply was read"
