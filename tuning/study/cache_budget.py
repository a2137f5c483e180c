"""How much memory a tuning process's chain cache may hold (:class:`engine.ChainCache`).

The budget starts at a share of the memory this process may use and grows, up to a larger share, only by what
the chains ask for again: a state evicted and computed again raises it by the room it lacked
(``ChainCache(grow_to=...)``), so a world whose seeds' reused states fit keeps the start budget, and one whose
states do not (a 1 M-pair multi-clock world holds 1.9 GB of them a seed) stops recomputing them every full-scale
stage once the memory allows. ``SEG3A_CHAIN_CACHE_BYTES`` pins the budget: no growth.
"""

from __future__ import annotations

import os

from engine import ChainCache, EngineError
from tuning.common.machine import memory_limit

CACHE_BYTES_FLOOR = 1536 * 1024 ** 2   # the least a process's chain cache holds (SEG3A_CHAIN_CACHE_BYTES overrides)
CACHE_MEMORY_SHARE = 0.125             # of the memory this process may use, split between one sweep's processes
CACHE_GROWTH_SHARE = 1 / 3             # the most the budget grows to on recomputation, split the same way
BUDGET_ENV = "SEG3A_CHAIN_CACHE_BYTES"


def _pinned() -> int | None:
    raw = os.environ.get(BUDGET_ENV, "")
    try:
        return max(0, int(raw)) if raw.strip() else None
    except ValueError:
        raise EngineError("E3A_TUN_050_USAGE", f"{BUDGET_ENV} must be an integer, not {raw!r}") from None


def _share(fraction: float, processes: int, memory: int | None) -> int:
    memory = memory if memory else memory_limit()
    return max(CACHE_BYTES_FLOOR, int(fraction * memory / max(1, processes)) if memory else 0)


def cache_bytes(processes: int = 1, memory: int | None = None) -> int:
    """The start budget: ``SEG3A_CHAIN_CACHE_BYTES``, else an eighth of the memory this process may use
    (:func:`tuning.common.machine.memory_limit`: its cgroup or RSS limit when lower than the machine's; ``memory``:
    a Dask worker's own limit) split between the ``processes`` of one sweep (``--workers K``), never below 1.5 GiB.
    A four-seed P3 sweep of the 381k world holds ~1.4 GB of S3 outputs at full scale: in a fixed 1.5 GiB every
    full-scale stage recomputed them (4.5 s of chain a trial against 1.0 s); 2.9 GiB (an eighth of 23.5 GiB)
    holds them (peak RSS 3.0 GB; a quarter, 5.9 GiB, was no faster and peaked at 4.2 GB)."""
    pinned = _pinned()
    return pinned if pinned is not None else _share(CACHE_MEMORY_SHARE, processes, memory)


def cache_ceiling(processes: int = 1, memory: int | None = None, shared: int = 0) -> int | None:
    """The most the budget grows to when the chains recompute evicted states: a third of the memory less the
    ``shared`` bytes the ``processes`` inherited from their coordinator (its cache, in memory beside theirs),
    split between them, never below the start budget; None (no growth) when ``SEG3A_CHAIN_CACHE_BYTES`` pins it."""
    if _pinned() is not None:
        return None
    memory = memory if memory else memory_limit()
    room = int(CACHE_GROWTH_SHARE * memory) - shared if memory else 0
    return max(cache_bytes(processes, memory), room // max(1, processes))


def chain_cache(max_entries: int = 64, processes: int = 1, memory: int | None = None) -> ChainCache:
    """A tuning process's chain cache: :func:`cache_bytes`, growing on recomputation up to :func:`cache_ceiling`."""
    return ChainCache(max_entries=max_entries, max_bytes=cache_bytes(processes, memory),
                      grow_to=cache_ceiling(processes, memory))


def rebudget(cache: ChainCache, processes: int, shared: int = 0) -> None:
    """Give a forked ``--workers`` process's cache the budget of one of ``processes``, which hold ``shared`` bytes
    of their coordinator's entries between them (:meth:`engine.ChainCache.inherited`)."""
    cache.max_bytes, cache.grow_to = cache_bytes(processes), cache_ceiling(processes, shared=shared)


def cache_report(cache: ChainCache, workers: list[dict] | None = None) -> dict:
    """What a sweep says about its cache: the budget it ended with, and the states computed again for want of
    room (with their bytes). ``workers``: the reports of its ``--workers K`` processes (each runs its trials on
    a cache of its own), listed under ``workers``; the totals count this process's and theirs."""
    own = {"budget_bytes": cache.max_bytes, "grow_to_bytes": cache.grow_to, "held_bytes": cache.bytes,
           "recomputed_states": cache.recomputed, "recomputed_bytes": cache.recomputed_bytes}
    if not workers:
        return own
    return own | {"workers": list(workers),
                  "total_recomputed_states": own["recomputed_states"] + sum(w["recomputed_states"] for w in workers),
                  "total_recomputed_bytes": own["recomputed_bytes"] + sum(w["recomputed_bytes"] for w in workers)}


def recomputation_note(report: dict) -> str | None:
    """The sweep's one line on states computed again for want of room (None when there were none), the
    ``--workers`` processes' included: the budget is per process."""
    states = report.get("total_recomputed_states", report.get("recomputed_states"))
    if not states:
        return None
    gib = lambda n: f"{n / 1024 ** 3:.1f} GiB" if n is not None else "-"  # noqa: E731
    workers = report.get("workers") or []
    where = f" in {len(workers)} worker processes and their coordinator" if workers else ""
    budget = workers[0] if workers else report
    return (f"chain cache: {states} states computed again for want of room"
            f" (their outputs {gib(report.get('total_recomputed_bytes', report.get('recomputed_bytes')))} in all, "
            f"evicted earlier){where}; budget "
            f"{gib(budget['budget_bytes'])} a process (grows to {gib(budget['grow_to_bytes'])}; "
            f"{BUDGET_ENV} sets it)")
