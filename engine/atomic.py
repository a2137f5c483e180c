"""The one atomic file write: stage beside the target, fsync, then rename (never half-written)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from engine.errors import E_PUBLISH, EngineError

_UMASK = os.umask(0)
os.umask(_UMASK)


def stage(path: Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file in ``path``'s folder (ordinary permissions); return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


def atomic_write(path: str | Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically; an OS failure is a coded error and leaves no temp file."""
    path = Path(path)
    tmp = None
    try:
        tmp = stage(path, data)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise EngineError(E_PUBLISH, f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()
    return path
