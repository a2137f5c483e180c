"""Scores shared across the steps of one campaign: :func:`shared_scores`.

A chain's score (identity, metric pack, gate table, S6/S7 status, realism floors) is a pure function of
(world, seed, merchant fraction, policy bytes): DESIGN §8's determinism, which the byte pins test. A campaign
scores the same policy set on the same seeds again and again: each step's anchor is the authority the last
step promoted, which that step's validation had just scored on the same validation seeds (and its sweep on the
same tuning seeds); the precheck and the validation of one step read the same anchors. Inside
``with shared_scores():`` a :class:`~tuning.study.objective.PhaseObjective` looks its chain's score up by
that content key before running the chain, and books it after.

What never reads the memo: a promotion witness's replay of the candidate and anything that publishes a run
(``run_root``) or keeps its tables; those re-run the chain by design. Outside the block nothing is shared.
"""

from __future__ import annotations

import contextlib
import copy
import threading

from engine import ChainCache

ENTRIES_MAX = 8192   # a score is ~5 KB (pack + gates), whatever the world's size: ~40 MB at most

_COUNT = threading.Lock()
_ACTIVE: list["ScoreMemo"] = []   # the innermost shared_scores() block's memo (process-wide: seeds run on threads)


class ScoreMemo:
    """Chain scores by content key, in the engine's own thread-safe cache (a :class:`~engine.ChainCache` bounded by
    entries); counts its hits and misses."""

    # outlets: the realised outlets per clock a validation keeps (about 5 KB: positions and counts, not strings)
    FIELDS = ("identity", "pack", "gates", "verdict", "fidelity", "s6_status", "s7_status", "floors", "fraction",
              "outlets")

    def __init__(self, entries: int = ENTRIES_MAX) -> None:
        self._rows = ChainCache(max_entries=int(entries))
        self.hits = self.misses = 0

    def get(self, key: tuple, outlets: bool = False) -> dict | None:
        """The row of ``key``, or None (a miss); with ``outlets``, a row scored without its outlets (a precheck of
        the same seeds) is a miss too: the caller scores it again, with them."""
        row = self._rows.get(key)
        if row is not None and outlets and row.get("outlets") is None:
            row = None
        with _COUNT:
            if row is None:
                self.misses += 1
            else:
                self.hits += 1
        return None if row is None else copy.deepcopy(row)   # the caller owns its copy: scoring never reaches in

    def put(self, key: tuple, ev) -> None:
        if ev.pack is None:
            return   # a chain that did not run is re-run (its error is cheap and worth seeing again)
        self._rows.put(key, copy.deepcopy({name: getattr(ev, name) for name in self.FIELDS}))

    def __len__(self) -> int:
        return len(self._rows)


def active() -> ScoreMemo | None:
    return _ACTIVE[-1] if _ACTIVE else None


@contextlib.contextmanager
def shared_scores(memo: ScoreMemo | None = None):
    """Share chain scores between every objective scored inside the block (a campaign's steps)."""
    memo = memo if memo is not None else ScoreMemo()
    _ACTIVE.append(memo)
    try:
        yield memo
    finally:
        _ACTIVE.remove(memo)


def score_key(world, seed: int, fraction: float, policies) -> tuple:
    """What a chain's score is a function of: the world's fingerprint (its static inputs and catalogue source),
    the seed, the merchant fraction and the policy bytes (their parameter hash)."""
    from engine import default_world

    return ((world or default_world()).fingerprint, int(seed), float(fraction), policies.parameter_hash)
