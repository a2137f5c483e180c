"""A journal file that survives a full disk, and a resume that truncates a torn tail.

Optuna's journal is an append-only file of JSON lines. A write that fails half-way (disk full,
file-size limit) leaves a partial last line; the next append glues onto it and from then on the
journal cannot be read, so every resume fails. Here:

- :class:`SafeJournalFileBackend` appends under the journal lock and, when the write or its fsync
  fails, truncates the file back to its size before the write (the journal stays valid) and raises
  ``E3A_TUN_040_STORAGE``;
- :func:`truncate_torn_tail` (run by every open) cuts anything after the last newline, under the
  same lock, so a journal torn by a process killed mid-write resumes.
"""

from __future__ import annotations

import json
import os

from optuna.storages.journal import JournalFileBackend

from engine import EngineError
from tuning.errors import E_STORAGE


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
