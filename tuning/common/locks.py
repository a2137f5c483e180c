"""The one inter-process lock of the harness: an exclusive ``flock`` on a file, which the kernel releases
when its holder dies (the authority lock, the MLflow store's creation, a journal study's budget section)."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


@contextmanager
def file_lock(path: str | Path, refuse: Callable[[OSError], BaseException] | None = None) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created with its folder; blocking). ``refuse``: the coded error
    raised when the lock file cannot be opened (else the ``OSError`` itself)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    except OSError as exc:
        if refuse is None:
            raise
        raise refuse(exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
