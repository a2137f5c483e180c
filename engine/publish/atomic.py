"""The one atomic file write: stage beside the target, fsync, then rename (never half-written)."""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

from engine.core.errors import E_PUBLISH, EngineError


@functools.cache
def process_umask() -> int:
    """The process's umask, read once on first use (reading it means setting it: never at import)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def stage(path: Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file in ``path``'s folder (ordinary permissions); return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~process_umask())  # mkstemp creates 0600
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


def publish_folder(folder: str | Path, files: dict[str, bytes]) -> Path:
    """Write ``files`` (name -> bytes) as the folder ``folder``, all or nothing: they are written into a
    temporary folder beside it, which is then renamed into place. An existing ``folder`` that holds only
    files of these names (an earlier publish) is swapped out and removed; one holding anything else is
    refused. An OS failure (a full disk) is a coded error and leaves ``folder`` as it was."""
    import shutil

    folder = Path(folder)
    old = None
    if folder.exists():
        held = sorted(p.name for p in folder.iterdir()) if folder.is_dir() and not folder.is_symlink() else [""]
        other = [name for name in held if name not in files]
        if other:
            raise EngineError(E_PUBLISH, f"{folder}: exists and is not a folder of these files only "
                                         f"({', '.join(other[:3]) or 'not a folder'}); write into a new folder")
    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
        for name, data in sorted(files.items()):
            with open(tmp / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o777 & ~process_umask())  # mkdtemp creates 0700
        if folder.exists():
            old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".old"))
            os.rename(folder, old / folder.name)
        os.rename(tmp, folder)
        tmp = None
    except OSError as exc:
        if old is not None and not folder.exists():
            os.rename(old / folder.name, folder)   # put the earlier folder back
        raise EngineError(E_PUBLISH, f"{folder}: cannot write ({exc.strerror or exc})") from None
    finally:
        for leftover in (tmp, old):
            if leftover is not None:
                shutil.rmtree(leftover, ignore_errors=True)
    return folder
