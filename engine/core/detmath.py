"""``log`` and ``exp`` that give the same bits on every machine (and the C library's ``pow`` and ``log2``).

numpy's float64 ``np.log`` and ``np.exp`` are dispatched by CPU: an AVX-512 machine runs numpy's own SIMD
routines, others the C library's. Both are accurate to about an ulp, but not to the same ulp, so shares drawn
through them (S3) differed in their last bits between an AVX-512 and an AVX2 machine, and so did every byte
downstream (DESIGN: byte-identical outputs whatever the machine). These use only operations IEEE 754 rounds
exactly on every platform (``frexp``/``ldexp``, ``+ - * /``, ``rint``, one ufunc per operation, never fused):
the fdlibm argument reductions with a Horner series, within a few ulps of the true value.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

LN2_HI = 6.93147180369123816490e-01   # fdlibm's split of ln 2: LN2_HI * k is exact for |k| < 2**20
LN2_LO = 1.90821492927058770002e-10
INV_LN2 = 1.44269504088896338700e+00
SQRT_HALF = 0.7071067811865476
# log(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716: 2 s (1 + z/3 + z^2/5 + ...), z = s^2 <= 0.0295
_ATANH = tuple(1.0 / (2 * i + 1) for i in range(1, 13))          # z^12 / 25 < 1e-19
# exp(r), |r| <= ln2 / 2: sum r^i / i!, i <= 14 (0.347^15 / 15! < 1e-18)
_EXP = tuple(1.0 / math.factorial(i) for i in range(15))
EXP_FLOOR = -1100.0   # exp(y) is 0 below about -745.1; clamped so k stays a small integer


def det_log(x) -> np.ndarray:
    """Natural log of float64 ``x``, the same bits on every machine (0 -> -inf, < 0 or NaN -> NaN, inf -> inf)."""
    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(x) & (x > 0.0)
    m, e = np.frexp(np.where(ok, x, 1.0))     # x = m 2^e, m in [0.5, 1)
    low = m < SQRT_HALF
    m = np.where(low, m * 2.0, m)             # m in [sqrt(1/2), sqrt(2)): exact
    k = (e - low).astype(np.float64)
    s = (m - 1.0) / (m + 1.0)
    z = s * s
    p = np.full_like(z, _ATANH[-1])
    for c in reversed(_ATANH[:-1]):   # in place: the same operations, fewer arrays
        np.multiply(p, z, out=p)
        np.add(p, c, out=p)
    np.multiply(p, z, out=p)
    log_m = 2.0 * s + 2.0 * s * p
    out = k * LN2_HI + (k * LN2_LO + log_m)
    out = np.where(ok, out, np.nan)
    out = np.where(x == 0.0, -np.inf, out)
    return np.where(x == np.inf, np.inf, out)


def det_exp(y) -> np.ndarray:
    """e ** ``y`` for float64 ``y``, the same bits on every machine (-inf -> 0, NaN -> NaN; ``y`` above 709 is
    outside this engine's use: it saturates to inf)."""
    y = np.asarray(y, dtype=np.float64)
    finite = ~np.isnan(y)
    t = np.clip(np.where(finite, y, 0.0), EXP_FLOOR, 709.78)
    k = np.rint(t * INV_LN2)
    r = (t - k * LN2_HI) - k * LN2_LO          # |r| <= ln2 / 2 (plus rounding)
    p = np.full_like(r, _EXP[-1])
    for c in reversed(_EXP[:-1]):
        np.multiply(p, r, out=p)
        np.add(p, c, out=p)
    out = np.ldexp(p, k.astype(np.int64))     # one rounding, also into the subnormals
    out = np.where(y > 709.78, np.inf, out)
    return np.where(finite, out, np.nan)


# ---- the C library's pow and log2, element by element --------------------------------------------------------
# numpy's float64 ``power`` and ``log2`` are CPU-dispatched like its log and exp: on a machine whose numpy finds
# AVX-512 (AVX512_SKX / AVX512_ICL) they run SIMD routines whose last bits differ from the C library's, which is
# what numpy runs elsewhere and what every pinned fixture and published figure of this engine was made with (a
# fresh machine with AVX512_ICL drew other S3 shares through the size law's power). These call the C library's
# (glibc's, whose results the fixtures of the machines before reproduce) one element at a time: the arrays they
# serve are a row per distinct site count, per pair or per (country, clock), not per outlet.

def c_pow(x, y: float) -> np.ndarray:
    """``x ** y`` for float64 ``x`` (any shape) and a scalar ``y``, by the C library's ``pow``: the same bits on every
    machine, where numpy's own power is not. A NaN for a negative base with a non-integer power, inf on overflow
    (numpy's answers)."""
    x = np.asarray(x, dtype=np.float64)
    y = float(y)
    try:
        flat = np.fromiter(map(math.pow, x.ravel().tolist(), itertools.repeat(y)), dtype=np.float64, count=x.size)
    except (ValueError, OverflowError):   # outside math.pow's domain: numpy's value for those elements only
        flat = np.array([_pow_or_numpy(v, y) for v in x.ravel().tolist()], dtype=np.float64)
    return flat.reshape(x.shape)


def _pow_or_numpy(v: float, y: float) -> float:
    try:
        return math.pow(v, y)
    except (ValueError, OverflowError):
        with np.errstate(all="ignore"):
            return float(np.power(np.float64(v), y))


def c_log2(x) -> np.ndarray:
    """log2 of float64 ``x`` by the C library's ``log2``, element by element (0 -> -inf, < 0 or NaN -> NaN)."""
    x = np.asarray(x, dtype=np.float64)
    flat = [math.log2(v) if v > 0.0 else (-math.inf if v == 0.0 else math.nan) for v in x.ravel().tolist()]
    return np.asarray(flat, dtype=np.float64).reshape(x.shape)
