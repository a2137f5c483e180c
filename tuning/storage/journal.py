"""A journal file that survives a full disk, and a resume that truncates a torn tail.

Optuna's journal is an append-only file of JSON lines. A write that fails half-way (disk full,
file-size limit) leaves a partial last line; the next append glues onto it and from then on the
journal cannot be read, so every resume fails. Here:

- :class:`SafeJournalFileBackend` appends under the journal lock and, when the write or its fsync
  fails, truncates the file back to its size before the write (the journal stays valid) and raises
  ``E3A_TUN_040_STORAGE``;
- :func:`truncate_torn_tail` (run by every open) cuts anything after the last newline, under the
  same lock, so a journal torn by a process killed mid-write resumes.

Group commit: every append is written and flushed at once (another process reading the journal sees it),
but only the operations that open or end something are fsynced: a study's creation or deletion, a
trial's creation and its state changes (RUNNING, COMPLETE, FAIL, ...). A trial's parameters,
intermediate values and attributes come between its creation and its end, and the fsync of its end
makes them durable too (fsync flushes the whole file). What an OS crash can lose is therefore only the
un-ended tail of a RUNNING trial, which a resume fails and retries anyway (:mod:`tuning.storage.recovery`).
A sweep saves about ten fsyncs per trial (~0.5 ms each here).
"""

from __future__ import annotations

import json
import os

from optuna.storages.journal import JournalFileBackend

from engine import EngineError
from tuning.common.errors import E_STORAGE

# the operations that open or end a study or trial, by their op codes in Optuna's journal file format
# (a persisted format: the codes are stable; a test pins them to optuna's own enum): fsynced at once
DURABLE_OPS = {"CREATE_STUDY": 0, "DELETE_STUDY": 1, "CREATE_TRIAL": 4, "SET_TRIAL_STATE_VALUES": 6,
               "DISCARD_TRIALS": 10}
# written and flushed, made durable by the fsync of the trial's next state change
DEFERRED_OPS = {"SET_STUDY_USER_ATTR": 2, "SET_STUDY_SYSTEM_ATTR": 3, "SET_TRIAL_PARAM": 5,
                "SET_TRIAL_INTERMEDIATE_VALUE": 7, "SET_TRIAL_USER_ATTR": 8, "SET_TRIAL_SYSTEM_ATTR": 9}
_DEFERRED_CODES = frozenset(DEFERRED_OPS.values())


def needs_fsync(logs: list[dict]) -> bool:
    """True unless every operation of the batch is one known to be deferrable (an unknown one is fsynced)."""
    return any(log.get("op_code") not in _DEFERRED_CODES for log in logs)


def truncate_torn_tail(path: str, lock) -> int:
    """Remove a partial (or undecodable) last line; returns the bytes removed."""
    lock.acquire()
    try:
        if not os.path.exists(path):
            return 0
        with open(path, "rb+") as fh:
            size = fh.seek(0, os.SEEK_END)
            keep = _last_good_end(fh, size)
            if keep < size:
                fh.truncate(keep)
                fh.flush()
                os.fsync(fh.fileno())
            return size - keep
    finally:
        lock.release()


def _last_good_end(fh, size: int) -> int:
    """Offset just after the last complete, decodable line."""
    window = min(size, 1 << 20)
    fh.seek(size - window)
    tail = fh.read(window)
    end = tail.rfind(b"\n") + 1          # 0: no newline in the window
    if end == 0:
        return 0 if window == size else size  # one torn line only; or a huge line we do not judge
    prev = tail.rfind(b"\n", 0, end - 1)
    if prev == -1 and window < size:
        return size - window + end      # the last line is longer than the window: not judged
    start = prev + 1
    try:
        json.loads(tail[start:end])
    except ValueError:
        end = start                     # the last "complete" line is itself torn: drop it as well
    return size - window + end


class SafeJournalFileBackend(JournalFileBackend):
    """JournalFileBackend whose failed append leaves the file exactly as it was."""

    def __init__(self, file_path: str, lock_obj) -> None:
        super().__init__(file_path, lock_obj=lock_obj)
        self._safe_path, self._safe_lock = file_path, lock_obj

    def append_logs(self, logs: list[dict]) -> None:
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode("utf-8")
        self._safe_lock.acquire()
        try:
            size = os.path.getsize(self._safe_path)
            try:
                with open(self._safe_path, "ab") as fh:
                    fh.write(data)
                    fh.flush()
                    if needs_fsync(logs):
                        os.fsync(fh.fileno())
            except OSError as exc:
                self._restore(size)
                raise EngineError(E_STORAGE, f"journal {self._safe_path}: write failed ({exc.strerror or exc}); "
                                             f"the journal was left intact, resume when there is space") from None
        finally:
            self._safe_lock.release()

    def _restore(self, size: int) -> None:
        try:
            os.truncate(self._safe_path, size)
        except OSError:
            pass  # the next open truncates the torn tail
