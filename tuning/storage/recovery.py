"""Crash safety of a sweep on shared Optuna storage: who owns a RUNNING trial, whether that owner
is still alive, and an exclusive section in which a worker counts the budget and asks for a trial.

A killed worker leaves its trial RUNNING (the journal and sqlite backends have no heartbeat). At
the next ``ask`` any worker fails such a trial and enqueues its parameters again with the user attr
``retry_of`` = the original trial number, so the budget is completed with nothing lost and nothing
counted twice; tracking keys the MLflow run by that original number.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import weakref
from pathlib import Path
from typing import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuning.common.locks import file_lock

WORKER_ATTR = "worker"
RETRY_ATTR = "retry_of"
NO_OWNER_GRACE_S = 30.0
# where optuna-dashboard reads a trial's constraint values (Optuna 5 stores them under ``constraints:veto``)
DASHBOARD_CONSTRAINTS_KEY = "constraints"


def _start_ticks(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] == "Z" else fields[19]  # state Z = zombie (dead, not yet reaped)


def process_alive(pid: int, start_ticks: str | None = None) -> bool:
    """Is ``pid`` alive (and, when known, the same process that started at ``start_ticks``)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if Path("/proc").is_dir():
        ticks = _start_ticks(pid)
        if ticks is None:
            return False
        if start_ticks is not None and ticks != start_ticks:
            return False
    return True


def this_worker() -> dict:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start_ticks": _start_ticks(pid)}


def trial_id(storage, study_name: str, number: int) -> int:
    """A trial's storage id, through the storage's public API (never a trial's private ``_trial_id``)."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)


# What a live trial's storage does not change while it runs, read once per trial (each read is one or two
# queries on an RDB storage, and a trial asks for them several times): its storage id and its original number.
_LIVE_IDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ORIGINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def live_trial_id(trial) -> int:
    """The storage id of an asked (live) :class:`optuna.trial.Trial` (looked up once per trial)."""
    tid = _LIVE_IDS.get(trial)
    if tid is None:
        tid = _LIVE_IDS[trial] = trial_id(trial.storage, trial.study.study_name, trial.number)
    return tid


def remember_live_trial(trial, tid: int, origin: int | None) -> None:
    """What the process that asked ``trial`` already knows: its storage id and (None: unknown) the number of
    its first attempt (see :func:`original_number`)."""
    _LIVE_IDS[trial] = tid
    if origin is not None:
        _ORIGINS[trial] = origin


def mirror_constraints(trial, values: Sequence[float]) -> None:
    """Also store the trial's constraint values where optuna-dashboard reads them."""
    trial.storage.set_trial_system_attr(live_trial_id(trial), DASHBOARD_CONSTRAINTS_KEY, [float(v) for v in values])


def original_number(trial) -> int:
    """The number of a trial's first attempt: a journal retry names it in ``retry_of``, an RDB heartbeat
    retry through Optuna's public ``RetryHeartbeatStaleTrialCallback.retried_trial_number``."""
    import warnings

    from optuna.storages import RetryHeartbeatStaleTrialCallback

    known = None if isinstance(trial, FrozenTrial) else _ORIGINS.get(trial)
    if known is not None:
        return known
    if RETRY_ATTR in trial.user_attrs:
        return int(trial.user_attrs[RETRY_ATTR])
    frozen = trial if isinstance(trial, FrozenTrial) else trial.storage.get_trial(live_trial_id(trial))
    with warnings.catch_warnings():   # an experimental API since Optuna 2.8 (still public)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        failed = RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
    return trial.number if failed is None else int(failed)


def is_stale(trial: FrozenTrial, stale_after_s: float, now: dt.datetime | None = None,
             under_budget_lock: bool = False) -> bool:
    """A RUNNING trial whose worker is gone (same host: pid check; other host: age > stale_after_s). Without a
    ``worker`` attr: seen under the budget lock (inside which a worker asks and names itself), its asker died in
    between, so it is stale at once; otherwise after ``NO_OWNER_GRACE_S`` (it may be mid-ask)."""
    if trial.state != TrialState.RUNNING:
        return False
    now = now or dt.datetime.now()
    age = (now - trial.datetime_start).total_seconds() if trial.datetime_start else float("inf")
    owner = trial.user_attrs.get(WORKER_ATTR)
    if not owner:
        return under_budget_lock or age > NO_OWNER_GRACE_S
    if owner.get("host") == socket.gethostname():
        return owner_dead(trial)
    return age > stale_after_s


def owner_dead(trial: FrozenTrial) -> bool:
    """Is the worker that asked this trial (its ``worker`` attr) known to be dead (:func:`worker_dead`)?"""
    return worker_dead(trial.user_attrs.get(WORKER_ATTR))


def worker_dead(worker: dict | None) -> bool:
    """Is this worker (what :func:`this_worker` recorded) known to be dead: a process of this host that no
    longer runs? A worker of another host, or no worker at all, is not known dead."""
    worker = worker or {}
    if worker.get("host") != socket.gethostname() or not str(worker.get("pid", "")).isdigit():
        return False
    return not process_alive(int(worker["pid"]), worker.get("start_ticks"))


def recover_stale_trials(study: optuna.Study, storage, stale_after_s: float,
                         under_budget_lock: bool = False) -> list[int]:
    """Fail every stale RUNNING trial (``study.tell`` by number, as another process may) and enqueue its
    parameters again; returns their numbers. ``storage`` is the study's storage (for the reason attr);
    ``under_budget_lock``: the caller holds the budget lock (:func:`is_stale`)."""
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_stale(trial, stale_after_s, under_budget_lock=under_budget_lock):
            continue
        storage.set_trial_system_attr(trial_id(storage, study.study_name, trial.number), "failed_reason",
                                      "worker died (recovered)")
        study.tell(trial.number, state=TrialState.FAIL)
        study.enqueue_trial(dict(trial.params), user_attrs={RETRY_ATTR: original_number(trial)})
        recovered.append(trial.number)
    return recovered


def counts(study: optuna.Study) -> dict[str, int]:
    out = {s.name: 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] += 1
    return out


def exclusive(lock_path: Path):
    """An inter-process lock (flock: released by the kernel when its holder dies)."""
    return file_lock(lock_path)
