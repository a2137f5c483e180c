"""The memory this process may use: the machine's, or less where a cgroup or an RSS limit says so.

The same reading as Dask's ``distributed.system.memory_limit`` (the least of the physical memory, the cgroup v1/v2
limits and ``RLIMIT_RSS``), without importing Dask or psutil into a sweep process: a container given 4 GiB on a
256 GiB host must size its caches for 4 GiB.
"""

from __future__ import annotations

import os
import sys

CGROUP_LIMITS = ("/sys/fs/cgroup/memory/memory.limit_in_bytes",        # cgroups v1 hard limit
                 "/sys/fs/cgroup/memory/memory.soft_limit_in_bytes",   # cgroups v1 soft limit
                 "/sys/fs/cgroup/memory.max",                          # cgroups v2 hard limit
                 "/sys/fs/cgroup/memory.high")                         # cgroups v2 soft limit


def _physical() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def _read_limit(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None   # "max": no limit


def memory_limit(cgroup_files=CGROUP_LIMITS) -> int | None:
    """Bytes of memory available to this process (None when the platform tells nothing)."""
    limits = [_physical()]
    if sys.platform == "linux":
        limits += [_read_limit(p) for p in cgroup_files]
    try:
        import resource
        rss = resource.getrlimit(resource.RLIMIT_RSS)[1]
        limits.append(rss if rss > 0 else None)
    except (ImportError, OSError, ValueError):
        pass
    known = [x for x in limits if x]
    return min(known) if known else None
