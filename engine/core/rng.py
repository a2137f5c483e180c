"""Keyed, order-independent random streams (DESIGN §4, §8).

One primitive serves every consumer: a substream is keyed by SHA-256 of
(master || uer(stream name) || LE64(merchant_id) || uer(country_iso)); a draw is
Philox4x32-10 applied to a counter (the zone's position in the sorted Z(c), or a
draw index). A draw therefore depends only on (master, stream, merchant, country,
counter): never on processing order, partitioning, or which other pairs exist.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Sequence

import numpy as np

from engine.core.hashing import uer

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
TWO_53 = float(2**53)


_CHUNK = 1 << 15   # rows per block: a block's words stay in cache, no temporary the size of the whole draw


def _philox_block(c0, c1, c2, c3, k0, k1, rounds: int) -> None:
    """Philox4x32 rounds in place on one block's uint64 words (each holding a 32-bit value)."""
    p0, p1 = np.empty_like(c0), np.empty_like(c0)
    for r in range(rounds):
        if r:
            k0 += _W0
            k0 &= _MASK32
            k1 += _W1
            k1 &= _MASK32
        np.multiply(c0, _M0, out=p0)
        np.multiply(c2, _M1, out=p1)
        np.right_shift(p1, _SHIFT32, out=c0)   # c0' = hi(M1 * c2) ^ c1 ^ k0
        c0 ^= c1
        c0 ^= k0
        np.bitwise_and(p1, _MASK32, out=c1)    # c1' = lo(M1 * c2)
        np.right_shift(p0, _SHIFT32, out=c2)   # c2' = hi(M0 * c0) ^ c3 ^ k1
        c2 ^= c3
        c2 ^= k1
        np.bitwise_and(p0, _MASK32, out=c3)    # c3' = lo(M0 * c0)


def _blocks(counter: np.ndarray, key: np.ndarray, rounds: int):
    """(start, end, (c0, c1, c2, c3)) per block of rows, after the rounds."""
    for a in range(0, len(counter), _CHUNK):
        b = min(len(counter), a + _CHUNK)
        words = [counter[a:b, i].astype(np.uint64) for i in range(4)]
        _philox_block(*words, key[a:b, 0].astype(np.uint64), key[a:b, 1].astype(np.uint64), rounds)
        yield a, b, words


def philox4x32(counter: np.ndarray, key: np.ndarray, rounds: int = 10) -> np.ndarray:
    """Vectorised Philox4x32 (Salmon et al. 2011). ``counter`` (n,4) and ``key`` (n,2) uint32 words."""
    out = np.empty((len(counter), 4), dtype=np.uint32)
    for a, b, words in _blocks(counter, key, rounds):
        for i, w in enumerate(words):
            out[a:b, i] = w
    return out


def uniforms(keys: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """One uniform in the open interval (0, 1) per (key row, counter), 53-bit resolution."""
    counters = np.asarray(counters, dtype=np.uint64)
    ctr = np.empty((len(counters), 4), dtype=np.uint32)
    ctr[:, 0] = (counters & _MASK32).astype(np.uint32)
    ctr[:, 1] = (counters >> _SHIFT32).astype(np.uint32)
    ctr[:, 2] = keys[:, 2]
    ctr[:, 3] = keys[:, 3]
    out = np.empty(len(counters), dtype=np.float64)
    for a, b, (w0, w1, _, _) in _blocks(ctr, keys, 10):
        w0 <<= np.uint64(21)
        w1 >>= np.uint64(11)
        w0 |= w1
        out[a:b] = w0
    out += 0.5
    out /= TWO_53
    return out


def pair_keys(master: bytes, stream: str, merchant_ids: Sequence[int], countries: Sequence[str]) -> np.ndarray:
    """(n, 4) uint32: Philox key words k0, k1 and the two fixed high counter words."""
    copy = hashlib.sha256(master + uer(stream)).copy   # the prefix's state, hashed once
    mid_bytes = np.asarray(merchant_ids, dtype=np.uint64).astype("<u8").tobytes()
    framed = {c: uer(str(c)) for c in set(countries)}
    digests = []
    for i, country in enumerate(countries):   # one update per pair: LE64(merchant_id) || uer(country)
        h = copy()
        h.update(mid_bytes[8 * i: 8 * i + 8] + framed[country])
        digests.append(h.digest()[:16])
    return np.frombuffer(b"".join(digests), dtype="<u4").reshape(-1, 4).astype(np.uint32)


def stream_ids(keys: np.ndarray) -> list[str]:
    """Hex evidence of each substream key (the 16 key bytes)."""
    return [row.astype("<u4").tobytes().hex() for row in keys]


def pair_uniforms(master: bytes, stream: str, merchant_ids: Sequence[int], countries: Sequence[str],
                  counter: int = 0) -> np.ndarray:
    """One uniform per pair at a fixed counter (hash-law uniforms such as S1's u_det)."""
    keys = pair_keys(master, stream, merchant_ids, countries)
    return uniforms(keys, np.full(len(keys), counter, dtype=np.uint64))


class Keyring:
    """The substream keys of one master over a fixed pair domain, each pair's computed on first use and kept.

    A sweep's candidates that change S1 escalate different subsets of the same domain on the same seed: the
    keys of a pair are the same whichever subset it is in (they read the master, the stream and the pair only),
    so each is hashed once per seed instead of once per candidate. ``keys(stream, rows)`` equals
    ``pair_keys(master, stream, merchants[rows], countries[rows])``. Partitions on threads ask for disjoint rows.
    """

    def __init__(self, master: bytes, merchant_ids: np.ndarray, countries: np.ndarray, streams: Sequence[str] = ()) -> None:
        self.master = master
        self._merchants = np.asarray(merchant_ids, dtype=np.uint64)
        self._countries = np.asarray(countries, dtype=object)
        self._keys: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()
        for stream in streams:   # allocated now, so the chain cache sizes them with the state
            self._slot(stream)

    def __len__(self) -> int:
        return len(self._merchants)

    def __getstate__(self) -> dict:   # shipped to a Dask worker: the lock stays here
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def holds(self, rows: np.ndarray, merchant_ids: np.ndarray) -> bool:
        """True when ``rows`` are positions in the domain and its merchants there are ``merchant_ids``."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self._merchants)):
            return False
        return bool(np.array_equal(self._merchants[rows], np.asarray(merchant_ids, dtype=np.uint64)))

    def _slot(self, stream: str) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if stream not in self._keys:
                n = len(self._merchants)
                self._keys[stream] = (np.zeros((n, 4), dtype=np.uint32), np.zeros(n, dtype=bool))
            return self._keys[stream]

    def keys(self, stream: str, rows: np.ndarray) -> np.ndarray:
        """(len(rows), 4) the keys of the domain's ``rows`` (positions) on ``stream``."""
        keys, have = self._slot(stream)
        rows = np.asarray(rows, dtype=np.int64)
        missing = rows[~have[rows]]
        if len(missing):
            keys[missing] = pair_keys(self.master, stream, self._merchants[missing].tolist(),
                                      self._countries[missing].tolist())
            have[missing] = True
        return keys[rows]
