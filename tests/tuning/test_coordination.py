"""Workers sharing an RDB study: a dead worker's trial is retried at once by Optuna's own retry callback
when its death is known (a process of this host that no longer runs), and the study is closed once."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import warnings

import optuna
import pytest
import sqlalchemy.event
from optuna.trial import TrialState

from tuning.storage.budget import (CLOSE_ATTR, DEAD_WORKER_REASON, Coordinator, fail_dead_workers_trials,
                                 rdb_storage)
from tuning.storage.recovery import WORKER_ATTR, live_trial_id, original_number, this_worker


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def study(tmp_path, monkeypatch):
    """A study on sqlite with the defaults a user runs (10 s heartbeat, 60 s grace)."""
    for var in ("SEG3A_HEARTBEAT_INTERVAL", "SEG3A_GRACE_PERIOD"):
        monkeypatch.delenv(var, raising=False)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    storage = rdb_storage(url)
    s = optuna.create_study(study_name="s", storage=storage)
    return s, storage, url


def test_a_dead_workers_trial_is_retried_at_once_with_its_parameters(study):
    s, storage, _ = study
    s.enqueue_trial({"x": 0.25})
    s.enqueue_trial({"x": 0.5})
    s.enqueue_trial({"x": 0.75})
    dead = s.ask()
    dead.suggest_float("x", 0.0, 1.0)
    dead.set_user_attr(WORKER_ATTR, {"host": socket.gethostname(), "pid": _dead_pid(), "start_ticks": None})
    alive = s.ask()
    alive.suggest_float("x", 0.0, 1.0)
    alive.set_user_attr(WORKER_ATTR, this_worker())
    elsewhere = s.ask()
    elsewhere.suggest_float("x", 0.0, 1.0)
    elsewhere.set_user_attr(WORKER_ATTR, {"host": "another-host", "pid": _dead_pid(), "start_ticks": None})

    for t in (dead, alive, elsewhere):
        storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name("s"),
                                                                                 t.number))
    optuna.storages.fail_stale_trials(s)          # its heartbeat is fresh: the grace alone would wait 60 s
    assert s.trials[dead.number].state == TrialState.RUNNING
    assert fail_dead_workers_trials(s, storage) == [dead.number]
    assert fail_dead_workers_trials(s, storage) == []          # failed once, retried once
    states = {t.number: t.state for t in s.trials}
    assert states[dead.number] == TrialState.FAIL and s.trials[dead.number].system_attrs["failed_reason"] == \
        DEAD_WORKER_REASON
    assert states[alive.number] == states[elsewhere.number] == TrialState.RUNNING   # not known dead
    retry = [t for t in s.trials if t.state == TrialState.WAITING]
    assert len(retry) == 1 and retry[0].system_attrs["failed_trial"] == dead.number    # Optuna's retry callback
    assert retry[0].params == {"x": 0.25}


def test_a_retry_carries_the_parameters_not_the_dead_attempts_veto_or_record(study):
    """Optuna's retry copies every attribute of the failed trial, and set_constraint keeps a key already set: a
    retry carried its dead attempt's veto and its own was ignored (seen on a killed host's trial)."""
    from tuning.storage.recovery import mirror_constraints

    s, storage, _ = study
    s.enqueue_trial({"x": 0.25})
    dead = s.ask()
    dead.suggest_float("x", 0.0, 1.0)
    dead.set_user_attr(WORKER_ATTR, {"host": socket.gethostname(), "pid": _dead_pid(), "start_ticks": None})
    dead.set_user_attr("note", "kept")
    dead.set_constraint("veto", 3.0)   # the attempt had concluded (a veto, its record) when its worker died
    mirror_constraints(dead, [3.0])
    dead.set_user_attr("result", {"J": -1.0})
    assert fail_dead_workers_trials(s, storage) == [dead.number]
    (retry,) = [t for t in s.trials if t.state == TrialState.WAITING]
    assert retry.params == {"x": 0.25} and retry.system_attrs["failed_trial"] == dead.number
    assert not [k for k in retry.system_attrs if k.startswith("constraints")] and "result" not in retry.user_attrs
    assert retry.user_attrs["note"] == "kept"
    again = s.ask()
    assert again.number == retry.number
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # Optuna warns when it ignores a constraint
        again.set_constraint("veto", 0.0)
    s.tell(again, 0.5)
    assert s.trials[again.number].system_attrs["constraints:veto"] == 0.0


def test_the_budget_ask_fails_a_dead_workers_trial_and_asks_its_retry(study, tmp_path):
    s, storage, url = study
    s.enqueue_trial({"x": 0.25})
    dead = s.ask()
    dead.suggest_float("x", 0.0, 1.0)
    dead.set_user_attr(WORKER_ATTR, {"host": socket.gethostname(), "pid": _dead_pid(), "start_ticks": None})
    coordinator = Coordinator(s, storage, url, tmp_path / "lock", stale_after_s=3600)
    try:
        trial = coordinator.next_trial(target=1)   # one trial in the budget: without the retry it would wait
        assert trial is not None and trial.params == {"x": 0.25}
        tid = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name("s"), trial.number)
        assert storage.get_trial_system_attrs(tid)["failed_trial"] == dead.number
        assert original_number(trial) == original_number(storage.get_trial(tid)) == dead.number   # read at the ask
        assert live_trial_id(trial) == tid
    finally:
        coordinator.close()


def test_a_trial_whose_asker_died_before_naming_itself_is_retried_not_awaited(study, tmp_path):
    """A worker killed between ``ask`` and recording its ``worker`` attr and first heartbeat (both inside the
    budget lock) leaves a RUNNING trial nothing else would ever fail: the next ask under the lock retries it."""
    s, storage, url = study
    s.enqueue_trial({"x": 0.5})
    orphan = s.ask()                              # asked; its process died before naming itself
    orphan.suggest_float("x", 0.0, 1.0)
    optuna.storages.fail_stale_trials(s)          # no heartbeat was ever recorded: Optuna never finds it stale
    assert s.trials[orphan.number].state == TrialState.RUNNING
    assert fail_dead_workers_trials(s, storage) == []                  # outside the lock it may be mid-ask
    coordinator = Coordinator(s, storage, url, tmp_path / "lock", stale_after_s=3600)
    try:
        trial = coordinator.next_trial(target=1)  # one trial in the budget: before the fix this waited forever
        assert trial is not None and trial.params == {"x": 0.5}
        assert s.trials[orphan.number].state == TrialState.FAIL
        assert s.trials[orphan.number].system_attrs["failed_reason"] == DEAD_WORKER_REASON
        tid = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name("s"), trial.number)
        assert storage.get_trial_system_attrs(tid)["failed_trial"] == orphan.number
        assert WORKER_ATTR in s.trials[trial.number].user_attrs        # the retry is named at once
    finally:
        coordinator.close()


def test_the_study_is_closed_once(study, tmp_path):
    s, storage, url = study
    a = Coordinator(s, storage, url, tmp_path / "lock", 3600)
    b = Coordinator(optuna.load_study(study_name="s", storage=storage), storage, url, tmp_path / "lock", 3600)
    try:
        assert a.claim_close("run-a") is None                 # a closes
        assert b.claim_close("run-b") == "run-a"              # b names a's parent run
        a.close_done()
        assert b.claim_close("run-b") == "run-a" and s.user_attrs[CLOSE_ATTR]["done"] is True
        t = s.ask()
        s.tell(t, 1.0)                                        # one more COMPLETE trial: a new close
        assert b.claim_close("run-b") is None and s.user_attrs[CLOSE_ATTR]["parent_run_id"] == "run-b"
        dead = {"host": socket.gethostname(), "pid": _dead_pid(), "start_ticks": None}
        s.set_user_attr(CLOSE_ATTR, {**s.user_attrs[CLOSE_ATTR], "worker": dead})   # b died while closing
        assert a.claim_close("run-a") is None                 # its close is taken over
    finally:
        a.close()
        b.close()


class _Statements:
    """The SQL statements a storage's engine runs, by thread name."""

    def __init__(self, storage) -> None:
        self.by_thread: list[str] = []
        self.engine = storage.engine
        sqlalchemy.event.listen(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, *args) -> None:
        self.by_thread.append(threading.current_thread().name)

    def close(self) -> None:
        sqlalchemy.event.remove(self.engine, "before_cursor_execute", self._seen)


def test_a_trials_id_and_first_number_are_read_at_its_ask_and_a_told_trial_is_beaten_no_more(tmp_path, monkeypatch):
    """What the ask knows is not read again (each read is a query on an RDB storage): an asked trial's
    id and original number cost no statement afterwards; once told, the heartbeat neither beats nor reads it."""
    monkeypatch.setenv("SEG3A_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("SEG3A_GRACE_PERIOD", "30")
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    storage = rdb_storage(url)
    s = optuna.create_study(study_name="s", storage=storage)
    coordinator = Coordinator(s, storage, url, tmp_path / "lock", stale_after_s=3600)
    seen = _Statements(storage)
    try:
        first = coordinator.next_trial(target=3)
        first.suggest_float("x", 0.0, 1.0)
        asked = len(seen.by_thread)
        assert original_number(first) == first.number == 0
        assert live_trial_id(first) == storage.get_trial_id_from_study_id_trial_number(
            storage.get_study_id_from_name("s"), first.number)
        assert len(seen.by_thread) == asked + 2          # the two lookups of the check itself, nothing else
        s.tell(first, 1.0)
        coordinator.told(first)
        held = coordinator.next_trial(target=3)          # RUNNING: beaten every second
        seen.by_thread.clear()
        time.sleep(2.5)
        assert "optuna-heartbeat" in seen.by_thread     # the held trial is beaten
        s.tell(held, 2.0)
        coordinator.told(held)
        time.sleep(0.3)                                  # a beat already under way when it was told ends
        seen.by_thread.clear()
        time.sleep(1.5)
        assert "optuna-heartbeat" not in seen.by_thread   # both told: not even read to find out (it was, each beat)
    finally:
        seen.close()
        coordinator.close()


def test_a_single_stage_study_stops_asking_once_its_pruned_cap_is_reached(study, tmp_path):
    """The budget counts COMPLETE trials; a study whose trials are all pruned would never complete it. Past
    ``max_pruned`` PRUNED trials no trial is asked (the sweep stops short); a multi-fidelity study, whose PRUNED
    trials count against the budget, has no such cap."""
    s, storage, url = study
    coordinator = Coordinator(s, storage, url, tmp_path / "lock", stale_after_s=3600)
    coordinator.max_pruned = 3
    try:
        told = []
        for _ in range(10):
            trial = coordinator.next_trial(target=5)
            if trial is None:
                break
            s.tell(trial, state=TrialState.PRUNED)
            coordinator.told(trial)
            told.append(trial.number)
        assert told == [0, 1, 2], "three PRUNED trials, then none is asked though none is COMPLETE"
        coordinator.max_pruned, coordinator.count_pruned = None, True   # a multi-fidelity study: they are the budget
        trial = coordinator.next_trial(target=5)
        assert trial is not None and trial.number == 3
        s.tell(trial, 1.0)
        assert coordinator.next_trial(target=4) is None   # 3 PRUNED + 1 COMPLETE = the budget
    finally:
        coordinator.close()


def test_the_pruned_cap_is_the_study_files_or_a_multiple_of_the_budget():
    from dataclasses import replace

    from tests.tuning.conftest import REPO
    from tuning.storage.stores import PRUNED_PER_TRIAL, pruned_cap
    from tuning.study.spec import load_study

    p4 = load_study("P4", REPO / "studies")
    assert p4.pruner["name"] == "median" and pruned_cap(p4, 40) == PRUNED_PER_TRIAL * 40
    assert pruned_cap(replace(p4, pruner={**p4.pruner, "max_pruned": 7}), 40) == 7
    assert pruned_cap(replace(p4, pruner=None), 40) is None                     # nothing prunes
    assert pruned_cap(load_study("P1.2", REPO / "studies"), 40) is None


def test_a_journal_studys_worker_waits_for_the_last_trial_another_process_runs(tmp_path):
    """Two sweeps of one study on a journal (one machine): once the budget is taken, the process with nothing of
    its own left waits until the other's last trial is told, then leaves with the budget COMPLETE. It left at once,
    and its summary reported a study still running as its result. One holding an untold trial is let go to tell it."""
    from tuning.storage.stores import open_storage

    url = f"journal:{tmp_path / 's.journal'}"
    storage = open_storage(url, "s")
    s = optuna.create_study(study_name="s", storage=storage)
    first = s.ask()
    first.suggest_float("x", 0.0, 1.0)
    s.tell(first, 0.5)
    other = s.ask()                                # RUNNING in another live process (this one, named so)
    other.suggest_float("x", 0.0, 1.0)
    other.set_user_attr(WORKER_ATTR, this_worker())
    coordinator = Coordinator(s, storage, url, tmp_path / "lock", stale_after_s=3600)
    answer: list = []
    waiter = threading.Thread(target=lambda: answer.append(coordinator.next_trial(target=2)))
    try:
        assert coordinator.next_trial(target=2, holding=True) is None   # its own untold trial first
        assert coordinator.next_trial(target=2, give_up=lambda: True) is None   # --timeout passed: no wait
        waiter.start()
        waiter.join(1.0)
        assert waiter.is_alive() and not answer        # the last trial is RUNNING elsewhere: it waits
        s.tell(other, 0.7)
        waiter.join(10.0)
        assert not waiter.is_alive() and answer == [None] and len(s.get_trials(states=(TrialState.COMPLETE,))) == 2
    finally:
        if s.trials[other.number].state == TrialState.RUNNING:   # a failed assertion above: let the waiter go
            s.tell(other, 0.7)
        waiter.join(10.0)
        coordinator.close()
