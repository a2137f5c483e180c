"""The chain cache: state outputs by the content key of their declared reads, bounded by entries and bytes.

Plain LRU fails a sweep on a world whose reused states do not all fit. Each trial's full-scale stage walks the
same seeds in the same order, and LRU evicts each seed's states just before that seed comes round again, so
every trial recomputes all of them (a 1 M-pair world, about 0.9 GB of policy-free states a seed in a 2.9 GB
budget: a 24-trial P3 sweep took 215 s, against 64 s with room for all four seeds). So room is made in this
order:

1. **stale** entries, not asked for in the last ``stale_after`` lookups (an earlier phase's base), least
   recently used first;
2. entries put for the first time and not asked for since (a P3 candidate's own S4), least recently used
   first: one-off outputs make room for each other, as under LRU;
3. entries put **again** (computed before, evicted, computed again) and not asked for since, newest first:
   the entry being put is the first of them, so it is kept only in room the rules above free. In the sweep
   above, the seeds whose states are kept in the second trial keep them from then on, and only the others are
   recomputed, instead of all of them;
4. entries asked for again, least recently used first.

``stale_after=0`` makes every entry stale at once: plain LRU. An output larger than the whole budget is not
kept. Which entries are kept changes only the time a chain takes, never its outputs (content keys).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from engine.chain.sizing import approx_bytes

STALE_LOOKUPS = 2048   # about 120 chains of 17 states: far longer than a sweep's gap between two full-scale stages
KEYS_REMEMBERED = 4    # keys put, remembered (to know an entry put again) per entry the cache may hold


class _Entry:
    __slots__ = ("value", "size", "last", "again", "reused")

    def __init__(self, value, size: int, now: int, again: bool) -> None:
        self.value, self.size, self.last, self.again, self.reused = value, size, now, again, False


class ChainCache:
    """State outputs by content key, bounded by ``max_entries`` and (when given) ``max_bytes`` of the outputs it
    holds (:func:`engine.chain.sizing.approx_bytes`); room is made as the module says. Thread-safe: chains of
    several seeds may share it from threads."""

    def __init__(self, max_entries: int = 64, max_bytes: int | None = None, stale_after: int = STALE_LOOKUPS) -> None:
        self._entries: dict = {}   # least recently used first
        self._put_before: OrderedDict = OrderedDict()
        self.max_entries, self.max_bytes, self.stale_after = max_entries, max_bytes, stale_after
        self.bytes = 0
        self._now = 0   # lookups so far
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str):
        with self._lock:
            self._now += 1
            entry = self._entries.pop(key, None)
            if entry is None:
                return None
            entry.last, entry.reused = self._now, True
            self._entries[key] = entry
            return entry.value

    def put(self, key: str, value) -> None:
        size = approx_bytes(value) if self.max_bytes is not None else 0
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old.size
            again = self._remember(key)
            if self.max_bytes is not None and size > self.max_bytes:
                return
            self._entries[key] = _Entry(value, size, self._now, again)
            self.bytes += size
            self._make_room()

    def inherited(self) -> None:
        """In a process forked with this cache (a ``--workers`` process): the entries it holds are its parent's
        pages, shared copy-on-write while the parent keeps them, so evicting them here frees no memory. They stop
        counting against this process's byte budget (which bounds what it puts from now on), are never evicted to
        meet it, and count as asked for again (the parent computed them for every candidate: the anchors)."""
        with self._lock:
            for entry in self._entries.values():
                entry.size, entry.reused = 0, True
            self.bytes = 0

    def _remember(self, key: str) -> bool:
        """Whether ``key`` was put before (within the last ``KEYS_REMEMBERED * max_entries`` keys put)."""
        again = key in self._put_before
        self._put_before[key] = None
        self._put_before.move_to_end(key)
        while len(self._put_before) > KEYS_REMEMBERED * self.max_entries:
            self._put_before.popitem(last=False)
        return again

    def _over(self) -> bool:
        return len(self._entries) > self.max_entries or (self.max_bytes is not None and self.bytes > self.max_bytes)

    def _make_room(self) -> None:
        if not self._over():
            return
        stale, once, again, reused = [], [], [], []
        for key, e in self._entries.items():   # least recently used first
            if self._now - e.last >= self.stale_after:
                stale.append(key)
            else:
                (reused if e.reused else again if e.again else once).append(key)
        for key in (*stale, *once, *reversed(again), *reused):
            if self._entries[key].size == 0 and len(self._entries) <= self.max_entries:
                continue   # over the byte budget only: an inherited entry frees nothing
            self.bytes -= self._entries.pop(key).size
            if not self._over():
                return
