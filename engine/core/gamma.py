"""Inverse-CDF Gamma(alpha, 1) in log space: smooth in alpha, exact down to alpha = 1e-6.

``log_gamma_ppf(u, a)`` returns log x with P(a, x) = u (P the regularised lower incomplete
gamma). Where x < 1e-12 the series P(a, x) = x^a / Gamma(a+1) * (1 - a x/(a+1) + O(x^2))
gives log x = (log u + lgamma(a+1)) / a with relative error below x/(a+1) < 1e-12; elsewhere
scipy's ``gammaincinv`` is used. Working in logs keeps tiny alphas (whose draws underflow
any double) meaningful: shares are formed by a log-sum-exp. Logs and exponentials are
:mod:`engine.core.detmath`'s, so the shares have the same bits on every machine.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaincinv, gammaln

from engine.core.detmath import det_exp, det_log

SMALL_X_LOG = float(det_log(1e-12))


def log_gamma_ppf(u: np.ndarray, a: np.ndarray) -> np.ndarray:
    u = np.asarray(u, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    log_small = (det_log(u) + gammaln(a + 1.0)) / a
    out = log_small.copy()
    regular = log_small >= SMALL_X_LOG
    if regular.any():
        x = gammaincinv(a[regular], u[regular])
        out[regular] = det_log(x)
    return out


def dirichlet_from_uniforms(u: np.ndarray, alpha: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Shares G_i / sum G per group, with G_i = Gamma^-1(u_i; alpha_i), via log-sum-exp."""
    log_g = log_gamma_ppf(u, alpha)
    sizes = np.diff(np.r_[starts, len(u)])
    peak = np.repeat(np.maximum.reduceat(log_g, starts), sizes) if len(starts) else log_g
    w = det_exp(log_g - peak)
    total = np.repeat(np.add.reduceat(w, starts), sizes) if len(starts) else w
    return w / total
