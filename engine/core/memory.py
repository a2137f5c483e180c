"""Arrow's memory pool in the engine's processes.

Large worlds move hundreds of megabytes of Arrow buffers per chain (string key columns, takes, Parquet). With
pyarrow's default pool (mimalloc in the Linux wheels) measured on a 2-core virtual machine, a sweep's process spent
about a third of its CPU in the kernel, faulting fresh pages in for every chain; jemalloc keeps and reuses its
pages, and the same chains ran about 20% faster with half the kernel time (``README.md``, Scale, for the command
and the figures). A user's own choice (``ARROW_DEFAULT_MEMORY_POOL``) is kept, and a pyarrow built without jemalloc
keeps its default.
"""

from __future__ import annotations

import os

import pyarrow as pa

ENV = "ARROW_DEFAULT_MEMORY_POOL"


def use_engine_pool() -> str:
    """Make jemalloc Arrow's default pool unless the environment chose one; returns the backend in use."""
    if not os.environ.get(ENV):
        try:
            pool = pa.jemalloc_memory_pool()
        except NotImplementedError:   # this pyarrow was built without jemalloc
            pool = None
        if pool is not None and pa.default_memory_pool().backend_name != pool.backend_name:
            pa.set_memory_pool(pool)
    return pa.default_memory_pool().backend_name
