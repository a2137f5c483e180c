"""Create and migrate the MLflow store once, under a lock, before any worker logs to it.

MLflow creates a fresh sqlite store (and runs its alembic migrations) the first time a process
touches it. Several processes doing that at once (four sweeps started together on a fresh
checkout) crash in the migration and can leave the database broken. :func:`ensure_store` takes an
``flock`` beside the database, lets exactly one process create and migrate it, and is a no-op for
every later call in the process. A store that cannot be created (a read-only mount) is one coded
line, ``E3A_TUN_042_TRACKING_STORE``; so is a tracking server that does not accept a connection
(:func:`probe_server`: at once, where MLflow's client would retry each call for about a minute).
"""

from __future__ import annotations

import os
from pathlib import Path

from engine import EngineError
from tuning.common.errors import E_TRACKING
from tuning.common.locks import file_lock

_READY: set[str] = set()
PROBE_TIMEOUT_ENV = "SEG3A_TRACKING_PROBE_TIMEOUT"
SQLITE_MAX_PATH = 504   # bytes: sqlite's default SQLITE_MAX_PATHNAME (512) must hold its journal's name (+ "-journal")


def sqlite_path(uri: str) -> Path | None:
    """The database file a ``sqlite:///PATH`` URL names (an MLflow store's or an Optuna storage's), else None."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def default_uri() -> str:
    """The tracking store the environment names: ``MLFLOW_TRACKING_URI``, else the working directory's
    ``mlruns/mlflow.db`` (named only: nothing is created)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlruns' / 'mlflow.db'}"


def store_exists(uri: str | None = None) -> bool:
    """Does the tracking store at ``uri`` (default: the one the environment names) exist already (a tracking server:
    assumed)? Nothing is created to answer it."""
    db = sqlite_path(uri or default_uri())
    return db is None or db.exists()


def probe_server(uri: str) -> None:
    """An ``http(s)://`` tracking server must accept a TCP connection within ``SEG3A_TRACKING_PROBE_TIMEOUT``
    seconds (default 5); else one coded line. A server reached through a proxy is left to MLflow."""
    import socket
    import urllib.request
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    try:
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        host = port = None
    if not host:
        raise EngineError(E_TRACKING, f"MLflow tracking URI {uri!r}: no host and port")
    if urllib.request.getproxies() and not urllib.request.proxy_bypass(host):
        return
    try:
        socket.create_connection((host, port), timeout=float(os.environ.get(PROBE_TIMEOUT_ENV, "5"))).close()
    except OSError as exc:
        raise EngineError(E_TRACKING, f"MLflow tracking server {parts.scheme}://{host}:{port} is unreachable "
                                      f"({exc.strerror or exc})") from None


def readable_store_exists(uri: str | None = None) -> bool:
    """:func:`store_exists` for a command that only reads and must create nothing: a sqlite path longer than sqlite
    opens is refused first (one coded line, as a writer gets it), not reported as a store not made yet."""
    uri = uri or default_uri()
    db = sqlite_path(uri)
    if db is not None:
        check_path(db)
    return store_exists(uri)


def check_path(db: Path) -> None:
    """A sqlite store whose path is longer than sqlite opens is one coded line (MLflow would retry the open for over
    a minute)."""
    if len(os.fsencode(os.path.abspath(db))) > SQLITE_MAX_PATH:
        raise EngineError(E_TRACKING, f"MLflow store {db}: its path is {len(os.fsencode(os.path.abspath(db)))} bytes, "
                                      f"longer than sqlite opens ({SQLITE_MAX_PATH}); run from a shorter path or set "
                                      f"MLFLOW_TRACKING_URI")


def ensure_store(uri: str) -> None:
    """Create/migrate the tracking store at ``uri`` once (sqlite: under ``<db>.init.lock``); a tracking server
    is probed once (:func:`probe_server`)."""
    if uri in _READY:
        return
    if uri.startswith(("http://", "https://")):
        probe_server(uri)
        _READY.add(uri)
        return
    db = sqlite_path(uri)
    if db is None:
        return
    check_path(db)
    lock = db.with_name(db.name + ".init.lock")
    refuse = lambda exc: EngineError(E_TRACKING, f"MLflow store {db}: "  # noqa: E731
                                                 f"{'not writable' if db.exists() else 'cannot be created'} "
                                                 f"({exc.strerror or exc})")
    with file_lock(lock, refuse):
        if not os.access(db.parent, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
            raise EngineError(E_TRACKING, f"MLflow store {db}: not writable (read-only mount?)")
        opened(uri)   # creates + migrates, or verifies
        _READY.add(uri)


def opened(uri: str):
    """An MLflow client of the sqlite store at ``uri`` that has answered one request (a fresh store is created and
    migrated by it); a store MLflow cannot use (an older schema, a broken file) is one coded line."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    db = sqlite_path(uri)
    try:
        mlc = MlflowClient(uri)
        mlc.search_experiments(max_results=1)
        return mlc
    except MlflowException as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise EngineError(E_TRACKING, f"MLflow store {db}: {first}") from None
    except Exception as exc:  # noqa: BLE001 - sqlalchemy/alembic failures: one coded line
        raise EngineError(E_TRACKING, f"MLflow store {db}: {type(exc).__name__}: "
                                      f"{str(exc).splitlines()[0][:200] if str(exc) else ''}") from None
