"""``tag_front`` on a real MLflow store: the front ends ``pareto=true`` and every other run ``false``,
whether the runs were created by this process (no search) or by an earlier invocation (one search)."""

from __future__ import annotations

from tuning.study.trial_row import TrialRow
from tuning.trail.pareto_tags import tag_front


def _runs(mlc, exp: str, study: str, tags: list[str]) -> list[str]:
    return [mlc.create_run(exp, tags={"study": study, "run_kind": "trial", "pareto": t}).info.run_id for t in tags]


def _row(trial: int, mlflow_run_id: str) -> TrialRow:
    return TrialRow(trial=trial, J=None, feasible=True, mlflow_run_id=mlflow_run_id)


def _tags(mlc, ids):
    return [mlc.get_run(i).data.tags["pareto"] for i in ids]


def test_front_tags_with_and_without_a_search(project):
    from tuning.trail.tracking import client, experiment_id

    mlc = client()
    exp = experiment_id(mlc, "3A-pareto-test")
    ids = _runs(mlc, exp, "s", ["false"] * 4)
    other = _runs(mlc, exp, "other", ["true"])   # another study's front is never touched
    rows = [_row(i, r) for i, r in enumerate(ids)]
    # all created here: no search; only the front is written
    assert tag_front(mlc, rows, {0, 2}, exp, "s", known={i: False for i in ids}) == 2
    assert _tags(mlc, ids) == ["true", "false", "true", "false"]
    # a resumed invocation knows none of them: the search finds 0 and 2 true; 2 leaves, 3 joins the front
    assert tag_front(mlc, rows, {0, 3}, exp, "s") == 2
    assert _tags(mlc, ids) == ["true", "false", "false", "true"]
    # a mix: a new run (known false) and old ones (searched)
    new = _runs(mlc, exp, "s", ["false"])
    rows.append(_row(4, new[0]))
    assert tag_front(mlc, rows, {4}, exp, "s", known={new[0]: False}) == 3
    assert _tags(mlc, ids + new) == ["false", "false", "false", "false", "true"]
    assert _tags(mlc, other) == ["true"]


def test_the_incremental_front_equals_the_batch_front():
    """FrontTracker (one point at a time, only the front kept) == front() over every point, ties included."""
    import random

    from tuning.study.pareto import FrontTracker, front

    rng = random.Random(5)
    for direction in ("minimize", "maximize"):
        for _ in range(50):
            pts = [(i, float(rng.randint(0, 6)), float(rng.randint(0, 6))) for i in range(rng.randint(1, 40))]
            tracker, on = FrontTracker(direction), set()
            for n, j, f in pts:
                joined, left = tracker.add(str(n), j, f)
                assert not joined & on and left <= on
                on = (on - left) | joined
            assert sorted(int(k) for k in on) == front(pts, direction)


def test_the_close_corrects_live_tags(project):
    """Live tags (this process) plus the close's tag_front leave exactly the study's front true."""
    from tuning.trail.tracking import client, experiment_id

    mlc = client()
    exp = experiment_id(mlc, "3A-pareto-live")
    ids = _runs(mlc, exp, "s", ["true", "true", "false"])       # as the live tracker left them
    rows = [_row(i, r) for i, r in enumerate(ids)]
    known = {ids[0]: True, ids[1]: True, ids[2]: False}
    assert tag_front(mlc, rows, {1, 2}, exp, "s", known=known) == 2   # 0 leaves, 2 joins; no search needed
    assert _tags(mlc, ids) == ["false", "true", "true"]
