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
- A promotion's intent also holds every record taken with the files (its run, the registry version and
  alias, the tags, the ladder steps: :mod:`tuning.authority.promotion_txn`); rolling it forward finishes each of them
  once. :func:`settle` rolls an intent forward before a command reads the authority.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from engine import atomic_write
from engine import E_PUBLISH, EngineError
from engine import sha256_hex
from tuning.common.locks import file_lock

LOCK_FILE = ".authority.lock"
INTENT_FILE = ".install-intent.json"
_HELD: set[str] = set()   # the folders whose lock this process holds
_THREAD = threading.RLock()



@contextmanager
def authority_lock(policies_dir: str | Path) -> Iterator[None]:
    """Hold the authority lock of ``policies_dir`` (blocking); recover a torn install on entry."""
    key = str(Path(policies_dir).resolve())
    with _THREAD:
        if key in _HELD:  # re-entrant: promote -> record_step
            yield
            return
        refuse = lambda exc: EngineError(E_PUBLISH, f"{policies_dir}: cannot lock the authority "  # noqa: E731
                                                    f"({exc.strerror or exc})")
        with file_lock(Path(policies_dir) / LOCK_FILE, refuse):
            _HELD.add(key)
            try:
                recover(Path(policies_dir))
                yield
            finally:
                _HELD.discard(key)


def require_authority_folder(policies_dir: str | Path) -> None:
    """Refuse, before its lock is taken (which would leave a lock file behind), a folder that holds no authority: a
    world folder, a run root, a typo's twin. An authority folder holds its policy files, or an install's intent
    that finishes writing them."""
    from engine import E_POLICY_MISSING, POLICY_IDS

    folder = Path(policies_dir)
    if not folder.is_dir():
        raise EngineError(E_POLICY_MISSING, f"{policies_dir}: no authority folder here (pass --policies DIR)")
    missing = [f"{pid}.yaml" for pid in POLICY_IDS if not (folder / f"{pid}.yaml").is_file()]
    if missing and not (folder / INTENT_FILE).exists():
        raise EngineError(E_POLICY_MISSING, f"{policies_dir}: not an authority folder (no {', '.join(missing)}); "
                                            f"pass the folder tuning.author made (--policies DIR)")


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


def _apply(policies_dir: Path, intent: dict, files: dict[str, bytes]) -> dict:
    order = sorted(n for n in files if n != intent["last"]) + [intent["last"]]
    for name in order:
        target = policies_dir / name
        if not target.exists() or target.read_bytes() != files[name]:
            atomic_write(target, files[name])
    made: dict = {}
    if intent.get("steps"):   # a promotion or an authored install: its MLflow and ladder records
        from tuning.authority.promotion_txn import run_steps

        made = run_steps(policies_dir, intent, files)
    elif intent.get("authority_run_id"):
        from tuning.authority.promotion_txn import tag_authority

        tag_authority(policies_dir, intent["authority_run_id"], intent.get("run_tags") or {})
    (policies_dir / INTENT_FILE).unlink()
    return made


def install(policies_dir: Path, files: dict[str, bytes], last: str, authority_run_id: str | None = None,
            run_tags: dict | None = None, steps: list[dict] | None = None) -> dict:
    """Install ``files`` (name -> bytes) into ``policies_dir`` as one transaction; ``last`` is renamed
    last (the lineage record). ``steps``: the records taken with it (tuning.authority.promotion_txn), under one key.
    Call with :func:`authority_lock` held; returns what the steps made."""
    if str(Path(policies_dir).resolve()) not in _HELD:
        raise RuntimeError("install() needs the authority lock")
    intent = {"files": {n: base64.b64encode(d).decode("ascii") for n, d in files.items()},
              "sha256": {n: sha256_hex(d) for n, d in files.items()}, "last": last,
              "authority_run_id": authority_run_id, "run_tags": dict(run_tags or {})}
    if steps:   # key order kept: a ladder step's evidence reads in the order it was written
        intent.update(key=uuid.uuid4().hex, steps=json.loads(json.dumps(steps, default=str)))
    atomic_write(policies_dir / INTENT_FILE, json.dumps(intent).encode())
    return _apply(policies_dir, intent, files)


def pending(policies_dir: str | Path) -> bool:
    """Is an install of ``policies_dir`` unfinished (its intent still there)?"""
    return (Path(policies_dir) / INTENT_FILE).exists()


def settle(policies_dir: str | Path) -> None:
    """Finish an interrupted install before reading the authority (a sweep's base, a certification): a no-op
    without an intent, else the authority lock is taken, which rolls it forward."""
    if pending(policies_dir):
        with authority_lock(policies_dir):
            pass
