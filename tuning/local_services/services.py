"""``python -m tuning.local_services start|stop|status|purge [--dir .cluster]``: a PostgreSQL server and an
MLflow tracking server on loopback, for trying distributed sweeps on one machine (and for the tests).
``start`` prints the two URLs as shell exports; ``stop`` stops both and keeps the cluster's database and
artifacts for its next ``start``; ``purge`` stops it and deletes them (only in a folder ``start`` made: one
with its ``state.json`` or its database). A ``state.json`` it cannot read is one coded line, never a guess.

``start`` is idempotent: when a cluster already runs from ``--dir`` it prints that cluster's exports (and
says so on stderr), so ``eval "$(scripts/local_cluster.sh start)"`` works whether or not one was started
before; a cluster whose servers are gone (a reboot) is started again on its data. ``status`` prints the
same exports while it runs (exit 0), else says "not running" on stderr (exit 1).

PostgreSQL refuses to run as root: as root the cluster is initialised and run as the ``postgres``
user (Debian's package creates it), in a folder that user owns (``/var/tmp/seg3a-pgdata-<digest of --dir>``,
the same at every start). Authentication is ``trust`` on
127.0.0.1 only: this is a sandbox, not a deployment (see ``deploy/compose.yaml`` for that).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from engine import EngineError
from tuning.common.errors import E_USAGE
from tuning.trail.environment import prepare_for_mlflow

PG_USER = "seg3a"
DATABASES = ("optuna", "mlflow")


PORTS_FILE = "ports.json"   # the ports of the cluster's first start, reused by its later starts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[::-1]), None)
    if not found:
        raise EngineError(E_USAGE, f"PostgreSQL's {name} not found: install Debian's postgresql package")
    return found


def _as_pg(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _run(argv: list[str]) -> None:
    out = subprocess.run(argv, capture_output=True, text=True)
    if out.returncode != 0:
        raise EngineError(E_USAGE, f"{Path(argv[argv.index('--') + 1] if '--' in argv else argv[0]).name} "
                                   f"failed: {(out.stderr or out.stdout).strip().splitlines()[-1:]}")


def start_postgres(data: Path, port: int | None = None) -> str:
    """initdb + start on 127.0.0.1; create the ``optuna`` and ``mlflow`` databases. Returns the server URL."""
    port = port or free_port()
    data.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chmod(data, 0o700)
        shutil.chown(data, "postgres", "postgres")
    if not (data / "PG_VERSION").exists():
        _run(_as_pg([pg_bin("initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust", "-E", "UTF8",
                     "--no-instructions"]))
    _run(_as_pg([pg_bin("pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w", "-t", "60",
                 "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"]))
    url = f"postgresql://{PG_USER}@127.0.0.1:{port}"
    import psycopg  # the driver SQLAlchemy >= 2.1 picks for a plain postgresql:// URL

    with psycopg.connect(f"{url}/postgres", autocommit=True) as conn, conn.cursor() as cur:
        for db in DATABASES:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{db}"')
    return url


def stop_postgres(data: Path) -> None:
    if (data / "postmaster.pid").exists():
        subprocess.run(_as_pg([pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                       capture_output=True)


def start_mlflow(backend_uri: str, artifacts: Path, port: int | None = None, log: Path | None = None,
                 workers: int = 2):
    """``mlflow server`` on 127.0.0.1 (artifacts proxied by the server); returns (uri, Popen)."""
    port = port or free_port()
    artifacts.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
                             "--artifacts-destination", artifacts.resolve().as_uri(), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", str(workers)],
                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                            # the harness runs no MLflow GenAI jobs: no pool of huey job consumers competing for
                            # the cores (set MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true to have them); no telemetry
                            # thread either (tuning.trail.environment)
                            env=prepare_for_mlflow({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}))
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise EngineError(E_USAGE, f"mlflow server exited with {proc.returncode} (log: {log})")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                if r.status == 200:
                    return uri, proc
        except OSError:
            time.sleep(0.5)
    stop_process(proc.pid)
    raise EngineError(E_USAGE, f"mlflow server did not answer on {uri} within 120 s (log: {log})")


def stop_process(pid: int) -> None:
    """Stop a server started by :func:`start_mlflow` (its own process group: the gunicorn/uvicorn workers too)."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + wait
        while time.time() < deadline:
            try:  # reap our own child: a zombie leader would keep the group "alive"
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


ROOT_PGDATA = Path("/var/tmp")   # as root: where the ``postgres`` user keeps a cluster's database (kept at reboot)


def pg_data_dir(root: Path) -> Path:
    """Where the database of the cluster of ``root`` lives, the same at every start: ``root/pgdata``; as root, the
    server runs as ``postgres``, who may not traverse ``root``, so ``/var/tmp/seg3a-pgdata-<digest of root>``."""
    if os.geteuid() != 0:
        return root / "pgdata"
    return ROOT_PGDATA / f"seg3a-pgdata-{hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]}"


def _port_is_free(port) -> bool:
    if not isinstance(port, int) or not 0 < port < 65536:
        return False
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(root: Path) -> tuple[int, int]:
    """(PostgreSQL, MLflow) ports: those of the cluster's earlier starts (``ports.json``, kept by ``stop``) while
    free, so its studies, which record the tracking URI they log to, resume after a stop and a start; else new
    free ones, recorded for the next start."""
    path = root / PORTS_FILE
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        earlier = {}
    earlier = earlier if isinstance(earlier, dict) else {}
    ports = tuple(earlier.get(k) if _port_is_free(earlier.get(k)) else free_port() for k in ("postgresql", "mlflow"))
    path.write_text(json.dumps(dict(zip(("postgresql", "mlflow"), ports))))
    return ports


def start(root: Path) -> dict:
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    pgdata = pg_data_dir(root)
    pg_port, mlflow_port = cluster_ports(root)
    pg = start_postgres(pgdata, pg_port)
    try:
        uri, proc = start_mlflow(f"{pg}/mlflow", root / "artifacts", mlflow_port, log=root / "mlflow.log")
    except BaseException:
        stop_postgres(pgdata)
        raise
    state = {"optuna_storage": f"{pg}/optuna", "mlflow_tracking_uri": uri, "mlflow_pid": proc.pid,
             "pgdata": str(pgdata)}
    (root / "state.json").write_text(json.dumps(state, indent=2))
    return state


def _is_mlflow(pid: int) -> bool:
    """The process is (still) an MLflow server (where /proc tells; elsewhere assumed)."""
    try:
        return b"mlflow" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    except OSError:
        return False


def stop(root: Path) -> None:
    """Stop both servers; the cluster's database and artifacts stay for its next start."""
    state_file = root / "state.json"
    state = read_state(state_file)
    if state is None:
        return
    pid = state["mlflow_pid"]
    if pid > 0 and _is_mlflow(pid):  # after a reboot the recorded pid may be another program's
        stop_process(pid)
    stop_postgres(Path(state["pgdata"]))
    state_file.unlink()


STATE_FIELDS = {"optuna_storage": str, "mlflow_tracking_uri": str, "mlflow_pid": int, "pgdata": str}


def _usable(value, kind: type) -> bool:
    """A state field as :func:`start` writes it: a non-empty text, or a process id >= 0."""
    return isinstance(value, kind) and not isinstance(value, bool) and (value >= 0 if kind is int else bool(value))


def _state_problem(state) -> str:
    """What makes a parsed ``state.json`` unusable ("" when nothing does)."""
    if not isinstance(state, dict):
        return "not a JSON object"
    wrong = [k for k, kind in STATE_FIELDS.items() if not _usable(state.get(k), kind)]
    return f"missing or wrong {', '.join(wrong)}" if wrong else ""


def read_state(state_file: Path) -> dict | None:
    """The ``state.json`` :func:`start` wrote, or None when there is none. One it cannot use (not JSON, not an
    object, a field missing or of another type) is one coded line saying how to recover, never a traceback."""
    if not state_file.exists():
        return None
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not JSON, not UTF-8
        state, why = None, f"not readable JSON: {(str(exc).splitlines() or [type(exc).__name__])[0][:120]}"
    else:
        why = _state_problem(state)
        if not why:
            return state
    named = state if isinstance(state, dict) else {}
    servers = []
    if _usable(named.get("mlflow_pid"), int) and named["mlflow_pid"] > 0:
        servers.append(f"the MLflow server (process group {named['mlflow_pid']})")
    if _usable(named.get("pgdata"), str):
        servers.append(f"PostgreSQL (pg_ctl -D {named['pgdata']} stop)")
    how = (f"stop {' and '.join(servers)} if still running" if servers else
           "stop the cluster's mlflow server and PostgreSQL by hand if still running")
    raise EngineError(E_USAGE, f"{state_file}: the local cluster's state file is broken ({why}): {how}, then "
                               f"delete {state_file}; then start runs the cluster again on its data, or purge "
                               f"deletes that data")


def is_cluster(root: Path) -> bool:
    """``root`` is a folder :func:`start` made: its ``state.json`` (while started) or its database is there."""
    return (root / "state.json").is_file() or (pg_data_dir(root.resolve()) / "PG_VERSION").is_file()


def purge(root: Path) -> None:
    """Stop the cluster and delete what it holds: its database (every study and run), artifacts and log. A folder
    that is not a local cluster's (no state.json, no database made by start) is refused, nothing deleted."""
    if not is_cluster(root):
        raise EngineError(E_USAGE, f"{root} is not a local cluster folder (no state.json nor database made by "
                                   f"'python -m tuning.local_services start --dir {root}'): nothing purged")
    stop(root)
    shutil.rmtree(pg_data_dir(root.resolve()), ignore_errors=True)
    shutil.rmtree(root / "artifacts", ignore_errors=True)
    (root / "mlflow.log").unlink(missing_ok=True)
    (root / PORTS_FILE).unlink(missing_ok=True)


def running(root: Path) -> dict | None:
    """The state of the cluster started from ``root`` if both its servers answer, else None."""
    state = read_state(root / "state.json")
    if state is None:
        return None
    pg = subprocess.run(_as_pg([pg_bin("pg_ctl"), "-D", state["pgdata"], "status"]), capture_output=True)
    try:
        with urllib.request.urlopen(f"{state['mlflow_tracking_uri']}/health", timeout=5) as r:
            mlflow_up = r.status == 200
    except OSError:
        mlflow_up = False
    return state if pg.returncode == 0 and mlflow_up else None
