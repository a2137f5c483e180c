"""Dask's worker preload for the clusters :mod:`engine.chain.cluster` starts (``LocalCluster(preload=[...])``):
each worker process ignores Ctrl-C. A terminal sends SIGINT to the whole process group, and a worker that took
it printed a KeyboardInterrupt traceback above the command's one coded line; the command itself handles the
interrupt and closes the cluster, which ends its workers."""

from __future__ import annotations

import signal


def dask_setup(worker) -> None:   # Dask's preload hook, run in the worker process at its start
    signal.signal(signal.SIGINT, signal.SIG_IGN)
