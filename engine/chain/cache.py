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
kept. ``grow_to``: an entry put again that finds no room raises the byte budget by what it lacks, up to
``grow_to``: the budget follows what the chains ask for again (a world whose seeds' reused states outgrow the
start budget: a 1 M-pair multi-clock world holds 1.9 GB of them a seed), and one-off outputs never raise it.
``recomputed`` and ``recomputed_bytes`` count the entries put again (computed again for want of room). Which
entries are kept changes only the time a chain takes, never its outputs (content keys). Each rule's entries are
kept in their own order, so making room costs the same whatever the cache holds.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from engine.chain.sizing import approx_bytes

STALE_LOOKUPS = 2048   # about 120 chains of 17 states: far longer than a sweep's gap between two full-scale stages
KEYS_REMEMBERED = 4    # keys put, remembered (to know an entry put again) per entry the cache may hold


class _Entry:
    __slots__ = ("value", "size", "last", "group")

    def __init__(self, value, size: int, last: int, group: OrderedDict) -> None:
        self.value, self.size, self.last, self.group = value, size, last, group


class ChainCache:
    """State outputs by content key, bounded by ``max_entries`` and (when given) ``max_bytes`` of the outputs it
    holds (:func:`engine.chain.sizing.approx_bytes`); room is made as the module says. Thread-safe: chains of
    several seeds may share it from threads."""

    def __init__(self, max_entries: int = 64, max_bytes: int | None = None, stale_after: int = STALE_LOOKUPS,
                 grow_to: int | None = None) -> None:
        self.max_entries, self.max_bytes, self.stale_after, self.grow_to = max_entries, max_bytes, stale_after, grow_to
        self.bytes = 0
        self.recomputed = self.recomputed_bytes = 0   # entries put again: computed again for want of room
        self._now = 0                          # lookups so far
        self._entries: OrderedDict = OrderedDict()   # every entry, least recently used first (stale ones lead)
        self._once: OrderedDict = OrderedDict()      # rule 2, put order
        self._again: OrderedDict = OrderedDict()     # rule 3, put order
        self._reused: OrderedDict = OrderedDict()    # rule 4, least recently used first
        self._inherited: OrderedDict = OrderedDict() # a forked process's parent's entries (inherited)
        self._put_before: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str):
        with self._lock:
            self._now += 1
            entry = self._entries.get(key)
            if entry is None:
                return None
            entry.last = self._now
            self._entries.move_to_end(key)
            if entry.group is self._once or entry.group is self._again:   # asked for again: rule 4 from now on
                del entry.group[key]
                entry.group = self._reused
                self._reused[key] = None
            entry.group.move_to_end(key)
            return entry.value

    def put(self, key: str, value) -> None:
        size = approx_bytes(value) if self.max_bytes is not None else 0
        with self._lock:
            present = key in self._entries   # two threads computed it at once: not a recomputation
            if present:
                self._drop(key)
            again = self._remember(key) and not present
            group = self._again if again else self._once
            if again:
                self.recomputed += 1
                self.recomputed_bytes += size
                self._grow(size)
            if self.max_bytes is not None and size > self.max_bytes:
                return
            self._entries[key] = _Entry(value, size, self._now, group)
            group[key] = None
            self.bytes += size
            self._make_room()

    def inherited(self) -> int:
        """In a process forked with this cache (a ``--workers`` process): the entries it holds are its parent's
        pages, shared copy-on-write while the parent keeps them, so evicting them here frees no memory. They stop
        counting against this process's byte budget (which bounds what it puts from now on) and give way only to
        the entry bound or once stale. Returns their bytes."""
        with self._lock:
            held = self.bytes
            for key, entry in self._entries.items():
                del entry.group[key]
                entry.size, entry.group = 0, self._inherited
                self._inherited[key] = None
            self.bytes = 0
            return held

    def _grow(self, size: int) -> None:
        """Raise the byte budget by the room an entry put again lacks once the one-off outputs (rule 2) have made
        theirs, up to ``grow_to``."""
        if self.max_bytes is None or self.grow_to is None or self.bytes + size <= self.max_bytes:
            return   # room enough: the one-off entries need not be counted
        lacking = self.bytes - sum(self._entries[key].size for key in self._once) + size - self.max_bytes
        if lacking > 0:
            self.max_bytes = max(self.max_bytes, min(self.grow_to, self.max_bytes + lacking))

    def _remember(self, key: str) -> bool:
        """Whether ``key`` was put before (within the last ``KEYS_REMEMBERED * max_entries`` keys put)."""
        again = key in self._put_before
        self._put_before[key] = None
        self._put_before.move_to_end(key)
        while len(self._put_before) > KEYS_REMEMBERED * self.max_entries:
            self._put_before.popitem(last=False)
        return again

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        del entry.group[key]
        self.bytes -= entry.size

    def _over_entries(self) -> bool:
        return len(self._entries) > self.max_entries

    def _over(self) -> bool:
        return self._over_entries() or (self.max_bytes is not None and self.bytes > self.max_bytes)

    def _make_room(self) -> None:
        while self._over():
            oldest = next(iter(self._entries))
            if self._now - self._entries[oldest].last >= self.stale_after:
                self._drop(oldest)
            elif self._once:
                self._drop(next(iter(self._once)))
            elif self._again:
                self._drop(next(reversed(self._again)))
            elif self._reused:
                self._drop(next(iter(self._reused)))
            elif self._over_entries():
                self._drop(next(iter(self._inherited)))
            else:
                return   # only inherited entries left: they free no memory here
