"""Changes to the authority (``policies/``) as transactions: one lock, a write-ahead intent, recovery.

- :func:`authority_lock` serialises every command that changes the authority or its records
  (promote, freeze, ``certify --record``, ladder steps). It is an ``flock`` on
  ``policies/.authority.lock``, re-entrant within a process. Entering it first *recovers*: an
  unfinished install is rolled forward and temp files left by a killed writer are removed.
- :func:`install` writes the complete target state (every policy file and the new ``lineage.yaml``)
  as one intent file, atomically, before touching anything. Then each file is renamed into place,
  the lineage last, then the MLflow ``authority`` tags are set (exactly one run ``current``), then
  the intent is deleted. A kill before the intent exists leaves the old authority (rolled back: the
  intent never existed); a kill after leaves an intent that the next command rolls forward.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from engine import atomic_write
from engine import E_PUBLISH, EngineError
from engine import sha256_hex

LOCK_FILE = ".authority.lock"
INTENT_FILE = ".install-intent.json"
_HELD: dict[str, int] = {}
_THREAD = threading.RLock()



def _open_lock(policies_dir: Path) -> int:
    try:
        policies_dir.mkdir(parents=True, exist_ok=True)
        return os.open(policies_dir / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
    except OSError as exc:
        raise EngineError(E_PUBLISH, f"{policies_dir}: cannot lock the authority ({exc.strerror or exc})") from None


@contextmanager
def authority_lock(policies_dir: str | Path) -> Iterator[None]:
    """Hold the authority lock of ``policies_dir`` (blocking); recover a torn install on entry."""
    key = str(Path(policies_dir).resolve())
    with _THREAD:
        if key in _HELD:  # re-entrant: promote -> record_step
            yield
            return
        fd = _open_lock(Path(policies_dir))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _HELD[key] = fd
            recover(Path(policies_dir))
            yield
        finally:
            _HELD.pop(key, None)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _remove_temps(policies_dir: Path) -> None:
    for tmp in policies_dir.glob(".*.tmp"):
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass


def recover(policies_dir: Path) -> bool:
    """Roll an unfinished install forward; remove stray temp files. True when an intent was applied."""
    _remove_temps(policies_dir)
    intent_path = policies_dir / INTENT_FILE
    if not intent_path.exists():
        return False
    try:
        intent = json.loads(intent_path.read_bytes())
        files = {name: base64.b64decode(data) for name, data in intent["files"].items()}
        digests = intent["sha256"]
    except (ValueError, KeyError, TypeError):
        intent_path.unlink()  # written atomically, so this cannot be a torn intent; refuse to guess
        raise EngineError(E_PUBLISH, f"{intent_path}: unreadable install intent removed; check lineage.yaml")
    if any(sha256_hex(data) != digests.get(name) for name, data in files.items()):
        intent_path.unlink()
        raise EngineError(E_PUBLISH, f"{intent_path}: install intent does not match its digests; removed")
    _apply(policies_dir, intent, files)
    return True


def _apply(policies_dir: Path, intent: dict, files: dict[str, bytes]) -> None:
    order = sorted(n for n in files if n != intent["last"]) + [intent["last"]]
    for name in order:
        target = policies_dir / name
        if not target.exists() or target.read_bytes() != files[name]:
            atomic_write(target, files[name])
    if intent.get("authority_run_id"):
        tag_authority(intent["authority_run_id"], intent.get("run_tags") or {})
    (policies_dir / INTENT_FILE).unlink()


def install(policies_dir: Path, files: dict[str, bytes], last: str, authority_run_id: str | None = None,
            run_tags: dict | None = None) -> None:
    """Install ``files`` (name -> bytes) into ``policies_dir`` as one transaction; ``last`` is renamed
    last (the lineage record). Call with :func:`authority_lock` held."""
    if str(Path(policies_dir).resolve()) not in _HELD:
        raise RuntimeError("install() needs the authority lock")
    intent = {"files": {n: base64.b64encode(d).decode("ascii") for n, d in files.items()},
              "sha256": {n: sha256_hex(d) for n, d in files.items()}, "last": last,
              "authority_run_id": authority_run_id, "run_tags": dict(run_tags or {})}
    atomic_write(policies_dir / INTENT_FILE, json.dumps(intent, sort_keys=True).encode())
    _apply(policies_dir, intent, files)


def tag_authority(run_id: str, run_tags: dict) -> None:
    """Tag ``run_id`` ``authority=current`` and every other ``current`` run ``superseded``: whatever
    happened before (a kill between two tag writes, two promotes), exactly one run is current."""
    from mlflow.exceptions import MlflowException

    from tuning.tracking import client, log_batch

    mlc = client()
    log_batch(mlc, run_id, tags={**{k: str(v) for k, v in run_tags.items()}, "authority": "current"})
    for exp in mlc.search_experiments():
        for run in mlc.search_runs([exp.experiment_id], "tags.authority = 'current'", max_results=1000):
            if run.info.run_id != run_id:
                try:
                    log_batch(mlc, run.info.run_id, tags={"authority": "superseded", "superseded_by": run_id})
                except MlflowException:
                    pass
