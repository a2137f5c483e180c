"""Keyed, order-independent random streams (DESIGN §4, §8).

One primitive serves every consumer: a substream is keyed by SHA-256 of
(master || uer(stream name) || LE64(merchant_id) || uer(country_iso)); a draw is
Philox4x32-10 applied to a counter (the zone's position in the sorted Z(c), or a
draw index). A draw therefore depends only on (master, stream, merchant, country,
counter): never on processing order, partitioning, or which other pairs exist.
"""

from __future__ import annotations

import hashlib
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


def philox4x32(counter: np.ndarray, key: np.ndarray, rounds: int = 10) -> np.ndarray:
    """Vectorised Philox4x32 (Salmon et al. 2011). ``counter`` (n,4) and ``key`` (n,2) uint32 words."""
    c0, c1, c2, c3 = (counter[:, i].astype(np.uint64) for i in range(4))
    k0, k1 = key[:, 0].astype(np.uint64), key[:, 1].astype(np.uint64)
    for r in range(rounds):
        if r:
            k0 = (k0 + _W0) & _MASK32
            k1 = (k1 + _W1) & _MASK32
        p0 = _M0 * c0
        p1 = _M1 * c2
        hi0, lo0 = p0 >> _SHIFT32, p0 & _MASK32
        hi1, lo1 = p1 >> _SHIFT32, p1 & _MASK32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return np.stack([c0, c1, c2, c3], axis=1).astype(np.uint32)


def pair_keys(master: bytes, stream: str, merchant_ids: Sequence[int], countries: Sequence[str]) -> np.ndarray:
    """(n, 4) uint32: Philox key words k0, k1 and the two fixed high counter words."""
    prefix = hashlib.sha256(master + uer(stream))
    n = len(merchant_ids)
    out = np.empty((n, 4), dtype=np.uint32)
    mid_bytes = np.asarray(merchant_ids, dtype=np.uint64).astype("<u8").tobytes()
    framed = {c: uer(str(c)) for c in set(countries)}
    raw = bytearray(16 * n)
    for i, country in enumerate(countries):
        h = prefix.copy()
        h.update(mid_bytes[8 * i: 8 * i + 8])
        h.update(framed[country])
        raw[16 * i: 16 * i + 16] = h.digest()[:16]
    if n:
        out[:] = np.frombuffer(bytes(raw), dtype="<u4").reshape(-1, 4)
    return out


def stream_ids(keys: np.ndarray) -> list[str]:
    """Hex evidence of each substream key (the 16 key bytes)."""
    return [row.astype("<u4").tobytes().hex() for row in keys]


def uniforms(keys: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """One uniform in the open interval (0, 1) per (key row, counter), 53-bit resolution."""
    counters = np.asarray(counters, dtype=np.uint64)
    ctr = np.empty((len(counters), 4), dtype=np.uint32)
    ctr[:, 0] = (counters & _MASK32).astype(np.uint32)
    ctr[:, 1] = (counters >> _SHIFT32).astype(np.uint32)
    ctr[:, 2] = keys[:, 2]
    ctr[:, 3] = keys[:, 3]
    words = philox4x32(ctr, keys[:, :2]).astype(np.uint64)
    top = (words[:, 0] << np.uint64(21)) | (words[:, 1] >> np.uint64(11))
    return (top.astype(np.float64) + 0.5) / TWO_53


def pair_uniforms(master: bytes, stream: str, merchant_ids: Sequence[int], countries: Sequence[str],
                  counter: int = 0) -> np.ndarray:
    """One uniform per pair at a fixed counter (hash-law uniforms such as S1's u_det)."""
    keys = pair_keys(master, stream, merchant_ids, countries)
    return uniforms(keys, np.full(len(keys), counter, dtype=np.uint64))
