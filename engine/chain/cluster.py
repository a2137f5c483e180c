"""The engine's merchant partitions as Dask tasks: ``python -m engine run --cluster tcp://host:8786`` (an
existing ``dask scheduler``) or ``--cluster local:K`` (a ``dask.distributed`` LocalCluster of K worker
processes on this machine).

Only S3's plan (the keyed uniforms), S3 (share draws) and S4 (integerisation) run on the cluster, one task
per contiguous merchant range, and the results are gathered in partition order. Draws are keyed by (seed, merchant, country,
zone), never by where or in which order they run, so the published run is byte-identical to the
in-process one. The workers need the same engine version importable (``pip install seg3a[distributed]``
on every worker host). Dask is imported only here, and only when ``--cluster`` is given.
"""

from __future__ import annotations

import contextlib
import re
import socket
from typing import Iterator
from urllib.parse import urlsplit

from engine.core.errors import E_CLUSTER, E_USAGE, EngineError

_LOCAL = re.compile(r"^local:(\d+)$")


def parse_cluster(spec: str) -> tuple[str, int | str]:
    """``local:K`` -> ("local", K); ``tcp://host:port`` (or tls://) -> ("remote", address)."""
    m = _LOCAL.match(spec)
    if m and int(m.group(1)) >= 1:
        return "local", int(m.group(1))
    if re.match(r"^(tcp|tls|ucx|inproc)://[^\s/]+$", spec):
        try:
            urlsplit(spec).port   # a port past 65535, "[::1:8786": said here, not a traceback later
        except ValueError as exc:
            raise EngineError(E_USAGE, f"--cluster {spec!r}: {exc} (tcp://scheduler:port, port 1-65535)") from None
        return "remote", spec
    raise EngineError(E_USAGE, f"--cluster must be local:K (K >= 1) or tcp://scheduler:port, not {spec!r}")


class DaskMapper:
    """``run_chain``'s mapper: shared inputs scattered once to every worker, each partition's inputs scattered,
    one task per partition, results gathered in partition order."""

    def __init__(self, client) -> None:
        self.client = client

    @property
    def threads(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def __call__(self, fn, per_task: list[tuple], *shared) -> list:
        if len(per_task) <= 1:
            return [fn(*args, *shared) for args in per_task]
        # as one-element lists: scatter() would split a dict into futures keyed by the dict's own keys (and a
        # task with no shared input scatters none: the scheduler refuses an empty broadcast)
        shared_f = self.client.scatter(list(shared), broadcast=True, hash=False) if shared else []
        # per-task inputs go as data (scatter), not inside the task graph; held here until gathered, or the
        # scheduler may release them before their task ran ("lost dependencies")
        inputs = [self.client.scatter(list(args), hash=False) for args in per_task]
        futures = [self.client.submit(fn, *args_f, *shared_f, pure=False) for args_f in inputs]
        results = self.client.gather(futures)
        del inputs, shared_f
        return results


def _refuses_connections(address: str, timeout: float = 10.0) -> None:
    """A ``tcp://host:port`` that refuses a connection, or a host that does not resolve, is said at once (Dask's
    client retries a refused address until its 30 s timeout); one that accepts is left to Dask's handshake."""
    parts = urlsplit(address)
    if parts.scheme != "tcp" or not parts.hostname or parts.port is None:
        return
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout):
        pass


@contextlib.contextmanager
def dask_mapper(spec: str) -> Iterator[DaskMapper]:
    kind, where = parse_cluster(spec)
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise EngineError(E_USAGE, "--cluster needs dask.distributed: pip install 'seg3a[distributed]'") from None
    cluster = None
    try:
        if kind == "local":
            cluster = LocalCluster(n_workers=where, threads_per_worker=1, processes=True, dashboard_address=None,
                                   silence_logs=50, preload=["engine.chain.dask_worker_signals"])
            client = Client(cluster)
        else:
            _refuses_connections(where)
            client = Client(where, timeout="30s")
    except OSError as exc:
        if cluster is not None:
            cluster.close()
        raise EngineError(E_CLUSTER, f"cannot reach the Dask scheduler {spec}: {exc}") from None
    try:
        yield DaskMapper(client)
    except BaseException as exc:
        if not isinstance(exc, Exception):   # Ctrl-C, SIGTERM: the tasks it abandoned are not news to the user
            _quiet_abandoned_tasks()
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _quiet_abandoned_tasks() -> None:
    """An interrupted run leaves the client's tasks failed and unread: asyncio and distributed would log each
    ("Task exception was never retrieved ... AllExit") above the command's one coded line."""
    import logging

    for name in ("asyncio", "distributed"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def bench_cluster(policies, seed: int, world, scale: int, spec: str, partitions: int | None = None) -> dict:
    """A ``scale``-times-merchants world scored in-process and on the cluster ``spec``: wall seconds and ratio
    (scoring: S0-S4, the metric pack, S6 in memory); both runs' flags are then built and compared."""
    import resource
    import time

    from engine.chain.runner import run_chain
    from engine.world.model import outlets_for
    from engine.world.outlets import MERCHANTS_DEFAULT

    catalogue = outlets_for(world, seed, MERCHANTS_DEFAULT * scale)
    t0 = time.perf_counter()
    local = run_chain(policies, seed, world, outlets=catalogue)
    local_s = time.perf_counter() - t0
    local_flag, pairs, local_states = local.flag, len(local.cores["s1"]), dict(local.seconds)
    del local
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    t0 = time.perf_counter()
    with dask_mapper(spec) as mapper:
        start_s = time.perf_counter() - t0
        k = partitions or 2 * mapper.threads
        t1 = time.perf_counter()
        dist = run_chain(policies, seed, world, outlets=catalogue, partitions=k, mapper=mapper)
        dist_s = time.perf_counter() - t1
    return {"scale": scale, "pairs": pairs, "cluster": spec, "partitions": k,
            "in_process_seconds": local_s, "cluster_seconds": dist_s, "cluster_start_seconds": start_s,
            "cluster_over_in_process": dist_s / local_s, "identical_flag": dist.flag == local_flag,
            "in_process_states": local_states, "cluster_states": dist.seconds,
            "in_process_peak_rss_gb": peak_gb}
