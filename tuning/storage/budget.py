"""How the workers of one study share its budget: the exclusive section in which a worker counts the
trials and asks for one, and how a dead worker's RUNNING trial is found and retried.

* Journal storage (one machine): a flock file under ``.optuna/locks`` and the pid check of
  :mod:`tuning.storage.recovery` (the journal has no heartbeat).
* RDB storage (``postgresql://…``, ``sqlite:///…``): Optuna's own heartbeat. Every RUNNING trial of
  this process is beaten every ``SEG3A_HEARTBEAT_INTERVAL`` seconds (default 10) from the moment it
  is asked until it is told; a trial whose beat is older than ``SEG3A_GRACE_PERIOD`` (default 60) is
  failed by :func:`optuna.storages.fail_stale_trials` and re-queued by
  :class:`~optuna.storages.RetryHeartbeatStaleTrialCallback`, which names its original number
  (``retried_trial_number``). On PostgreSQL the exclusive section is a session advisory lock (released by the
  server when the holder's connection dies), so workers on any number of hosts never overshoot.
  A worker leaves only when COMPLETE == target; while the missing trials are RUNNING elsewhere it
  waits, so a worker that dies for good is replaced by whoever is still alive. So does a sweep process of a
  journal study (two sweeps of one study started together): it leaves with the study's budget complete, not while
  another process still runs its last trials (a ``--workers`` process leaves: its coordinator waits for them all).
  A RUNNING trial whose worker is known dead (a process of this host that no longer runs) does not wait
  for the grace period: the next worker of this host that counts the budget fails it and hands it to the
  same retry callback (:func:`fail_dead_workers_trials`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Iterator

import optuna
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState

from tuning.storage.recovery import (DASHBOARD_CONSTRAINTS_KEY, WORKER_ATTR, counts, exclusive, live_trial_id,
                                   original_number, owner_dead, recover_stale_trials, remember_live_trial, this_worker,
                                   trial_id, worker_dead)
from tuning.study.trial_row import RESULT_ATTR

HEARTBEAT_ENV, GRACE_ENV = "SEG3A_HEARTBEAT_INTERVAL", "SEG3A_GRACE_PERIOD"
DEAD_WORKER_REASON = "worker died (its process is gone; retried without waiting for the grace period)"
CLOSE_ATTR = "close"   # study user attr: who closes the study at which COMPLETE count (Coordinator.claim_close)


def is_rdb(url: str | None) -> bool:
    return bool(url) and "://" in url and not url.startswith("journal:")


def is_postgres(url: str | None) -> bool:
    return bool(url) and url.split("://", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def heartbeat_settings() -> tuple[int, int]:
    interval = int(os.environ.get(HEARTBEAT_ENV, "10"))
    grace = int(os.environ.get(GRACE_ENV, str(max(60, 3 * interval))))
    return max(1, interval), max(grace, interval + 1)


OUTCOME_USER_ATTRS = (RESULT_ATTR, "fidelity")   # what an attempt concluded: its record, its search stages


class RetryWithoutOutcome(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a dead worker's trial (its parameters again, ``failed_trial`` and ``retry_history``),
    without what the dead attempt had concluded. Optuna copies every attribute of the failed trial, its
    ``constraints:veto`` among them, and ``Trial.set_constraint`` keeps a key already set: the retry carried the
    dead attempt's veto and its own was ignored (with Optuna's warning), as it would carry the attempt's record."""

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        kept = copy.copy(trial)
        # Optuna's ``constraints:<key>`` and the dashboard's mirror (tuning.storage.recovery)
        kept.system_attrs = {k: v for k, v in trial.system_attrs.items()
                             if not k.startswith(DASHBOARD_CONSTRAINTS_KEY)}
        kept.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in OUTCOME_USER_ATTRS}
        super().__call__(study, kept)


def rdb_storage(url: str) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeat, stale-trial failing and retry (a connection idle for a second or more is
    pinged before use, :mod:`tuning.storage.idle_ping`: survives a DB restart). The
    workers ask and tell (not ``Study.optimize``) and keep the heartbeat themselves (:class:`Heartbeat`), so
    Optuna's warning that a heartbeat belongs to ``Study.optimize`` is silenced from here on."""
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    interval, grace = heartbeat_settings()
    callback = RetryWithoutOutcome(max_retry=3)
    import sqlalchemy.exc   # SQLAlchemy only for an RDB storage: a journal's sweep never loads it (about 0.2 CPU s)

    from tuning.storage.idle_ping import ping_when_idle

    for attempt in range(6):  # hosts starting at once race to create the schema: the losers retry
        try:
            storage = optuna.storages.RDBStorage(url, heartbeat_interval=interval, grace_period=grace,
                                                 heartbeat_stale_trial_callback=callback)
            if is_postgres(url):
                ping_when_idle(storage.engine)
            return storage
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == 5:
                raise
            time.sleep(0.3 * (attempt + 1))


def fail_dead_workers_trials(study: optuna.Study, storage, trials=None, under_budget_lock: bool = False) -> list[int]:
    """Fail the RUNNING trials whose worker is known dead (:func:`tuning.storage.recovery.owner_dead`) at once,
    as :func:`optuna.storages.fail_stale_trials` fails a trial whose heartbeat is older than the grace period,
    and pass each to the storage's own stale-trial callback (Optuna's retry: the same parameters queued
    again, the original number in ``failed_trial``). ``trials``: the study's trials if already read.

    ``under_budget_lock``: the caller holds :meth:`Coordinator.exclusive`. A worker asks and names itself (its
    ``worker`` attr, its first heartbeat) inside that lock, so a RUNNING trial seen without a ``worker`` attr
    then was asked by a process that died in between: it has no owner and no heartbeat, so nothing else would
    ever fail it, and the study would wait for it forever. It is failed and retried the same way.
    Returns their numbers."""
    callback = storage.get_heartbeat_stale_trial_callback()
    failed = []
    for trial in study.get_trials(deepcopy=False) if trials is None else trials:
        orphan = under_budget_lock and WORKER_ATTR not in trial.user_attrs
        if trial.state != TrialState.RUNNING or not (orphan or owner_dead(trial)):
            continue
        tid = trial_id(storage, study.study_name, trial.number)
        try:
            storage.set_trial_system_attr(tid, "failed_reason", DEAD_WORKER_REASON)
            if not storage.set_trial_state_values(tid, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:  # another worker failed it first
            continue
        if callback is not None:
            callback(study, storage.get_trial(tid))
        failed.append(trial.number)
    return failed


class _Heartbeat(threading.Thread):
    """Beats every RUNNING trial this process holds (asked, not yet told)."""

    def __init__(self, storage, interval: int) -> None:
        super().__init__(name="optuna-heartbeat", daemon=True)
        self.storage, self.interval = storage, interval
        self.trial_ids: set[int] = set()
        self.stop = threading.Event()
        self.guard = threading.Lock()

    def add(self, trial_id: int) -> None:
        self.storage.record_heartbeat(trial_id)  # at once: a trial without a beat is never found stale
        with self.guard:
            self.trial_ids.add(trial_id)

    def discard(self, trial_id: int) -> None:
        """A told trial is beaten no more (nor read again to find out that it is told)."""
        with self.guard:
            self.trial_ids.discard(trial_id)

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            with self.guard:
                ids = sorted(self.trial_ids)
            for tid in ids:
                try:
                    if self.storage.get_trial(tid).state != TrialState.RUNNING:
                        with self.guard:
                            self.trial_ids.discard(tid)
                        continue
                    self.storage.record_heartbeat(tid)
                except Exception:  # noqa: BLE001 - a missed beat (DB restarting) is retried next interval
                    pass


def pruned_out(counts: dict, cap: int | None) -> bool:
    """Whether a study with these trial counts (by state name) has run its ``cap`` of PRUNED trials
    (:func:`tuning.storage.stores.pruned_cap`; None: no cap)."""
    return cap is not None and counts["PRUNED"] >= cap


JOURNAL_WAIT_S = 0.5   # a journal study's worker waiting for the last trials another process runs polls this often


class Coordinator:
    """Budget and recovery for one worker process of one study."""

    def __init__(self, study: optuna.Study, storage, storage_url: str | None, lock_file: Path,
                 stale_after_s: float):
        """``storage`` is the study's storage object (as opened by :func:`tuning.storage.stores.open_storage`)."""
        self.study, self.storage, self.url = study, storage, storage_url
        self.lock_file, self.stale_after = lock_file, stale_after_s
        self.rdb = is_rdb(storage_url)
        self.count_pruned = False   # set by a multi-fidelity sweep: PRUNED trials count against the budget
        self.max_pruned: int | None = None   # else: PRUNED trials after which no trial is asked (pruned_out)
        self.seen = (0, 0)          # (done, RUNNING) as the last ask found them
        # a process whose budget is taken waits for the last trials others run (their death, on RDB, or their pid's,
        # on a journal); a --workers process on a journal leaves instead: its coordinator waits for all of them
        self.siblings_awaited = True
        self._pg_engine = None
        self._study_id: int | None = None
        self._beat: _Heartbeat | None = None
        if self.rdb:
            interval = storage.get_heartbeat_interval() or heartbeat_settings()[0]
            self._beat = _Heartbeat(storage, interval)
            self._beat.start()

    def spent(self, counts: dict) -> int:
        """The budget these trial counts (state name -> count) have spent: COMPLETE trials, and a multi-fidelity
        study's PRUNED ones (its budget is its candidates: a trial pruned at a search stage is one)."""
        return counts["COMPLETE"] + (counts["PRUNED"] if self.count_pruned else 0)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """The trial-budget lock: one worker of the study at a time counts the trials and asks for one.

        Counting ``COMPLETE + RUNNING`` and calling ``ask`` are two storage operations; without the
        lock, N workers sharing one storage can all see the same free slot and all ask, so the study
        ends with up to N - 1 trials more than ``--trials``. Journal storage: a flock file per study
        (:func:`tuning.storage.stores.lock_path`); PostgreSQL: a session advisory lock (hosts share it)."""
        if not is_postgres(self.url):
            with exclusive(self.lock_file):
                yield
            return
        import sqlalchemy

        from tuning.storage.idle_ping import ping_when_idle

        if self._pg_engine is None:
            self._pg_engine = ping_when_idle(sqlalchemy.create_engine(self.url, pool_size=1))
        key = int.from_bytes(hashlib.sha256(f"seg3a|{self.study.study_name}".encode()).digest()[:8], "big",
                             signed=True)
        with self._pg_engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()

    def next_trial(self, target: int, holding: bool = False, give_up=None):
        """Ask for the next trial of the budget; None when ``target`` trials are COMPLETE, when ``max_pruned``
        trials are PRUNED (the study stops short), when the budget is taken and this process ``holding`` an
        untold trial must tell it first, or when ``give_up()`` says so while it waits (``--timeout``: no trial
        starts after it)."""
        while True:
            with self.exclusive():
                if self.rdb:
                    fail_stale_trials(self.study)
                    trials = self.study.get_trials(deepcopy=False)   # one read serves both (an RDB read costs)
                    if fail_dead_workers_trials(self.study, self.storage, trials, under_budget_lock=True):
                        trials = self.study.get_trials(deepcopy=False)
                else:
                    recover_stale_trials(self.study, self.storage, self.stale_after, under_budget_lock=True)
                    trials = self.study.get_trials(deepcopy=False)
                c = {state.name: sum(t.state == state for t in trials) for state in TrialState}
                done = self.spent(c)
                self.seen = (done, c["RUNNING"])   # the budget as this ask found it (tuning.sweep.workers)
                taken = done + c["RUNNING"] >= target
                leaves = holding or not (self.rdb or self.siblings_awaited)
                if done >= target or pruned_out(c, self.max_pruned) or (taken and leaves):
                    return None
                if done + c["RUNNING"] < target:
                    trial = self.study.ask()
                    self._remember(trial, trials)
                    trial.set_user_attr(WORKER_ATTR, this_worker())
                    if self._beat is not None:
                        self._beat.add(live_trial_id(trial))
                    return trial
            # the rest is RUNNING elsewhere: wait for it or its death (a journal's dead owner is found by its pid)
            if give_up is not None and give_up():
                return None
            time.sleep(min(1.0, self._beat.interval / 2) if self._beat is not None else JOURNAL_WAIT_S)

    def _remember(self, trial, trials: list) -> None:
        """Record the asked trial's storage id (one query: the study's id is read once) and, from the trials read
        just before the ask, the number of its first attempt: a trial that was WAITING then is a queued one,
        whose record names it (a retry's ``failed_trial`` or ``retry_of``); a trial numbered after every trial
        read is new. Inside the budget lock nobody else asks, and every retry is queued under that lock, so
        nothing can come in between; anything else is left to :func:`original_number` to read."""
        if self._study_id is None:
            self._study_id = self.storage.get_study_id_from_name(self.study.study_name)
        tid = self.storage.get_trial_id_from_study_id_trial_number(self._study_id, trial.number)
        if trial.number == len(trials):
            origin = trial.number
        elif trial.number < len(trials) and trials[trial.number].number == trial.number and \
                trials[trial.number].state == TrialState.WAITING:
            origin = original_number(trials[trial.number])
        else:
            origin = None
        remember_live_trial(trial, tid, origin)

    def told(self, trial) -> None:
        """``trial`` (asked by this process) is told: its heartbeat stops."""
        if self._beat is not None:
            self._beat.discard(live_trial_id(trial))

    def claim_close(self, parent_run_id: str | None) -> str | None:
        """Who closes the study at its current COMPLETE count (reconciles the trial runs, writes the plots, the
        Pareto tags and the best trials' reports: once per study, not once per worker): None when this process
        does (it has just claimed it), else the parent run id of the process that did or does. A claim left by
        a process of this host that died before its close was done is taken over."""
        with self.exclusive():
            complete = counts(self.study)["COMPLETE"]
            claim = self.study.user_attrs.get(CLOSE_ATTR) or {}
            if claim.get("complete") == complete and claim.get("parent_run_id") != parent_run_id and (
                    claim.get("done") or not worker_dead(claim.get("worker"))):
                return claim.get("parent_run_id")
            self.study.set_user_attr(CLOSE_ATTR, {"complete": complete, "parent_run_id": parent_run_id,
                                                  "worker": this_worker(), "done": False})
            return None

    def close_done(self) -> None:
        """This process's close (see :meth:`claim_close`) is complete."""
        with self.exclusive():
            claim = dict(self.study.user_attrs.get(CLOSE_ATTR) or {})
            if claim.get("worker") == this_worker():
                self.study.set_user_attr(CLOSE_ATTR, {**claim, "done": True})

    def close(self) -> None:
        if self._beat is not None:
            self._beat.stop.set()
        if self._pg_engine is not None:
            self._pg_engine.dispose()
