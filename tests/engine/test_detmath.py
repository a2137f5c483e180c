"""engine/core/detmath.py: logs and exponentials with the same bits on every machine (numpy's own float64
``np.log``/``np.exp`` are SIMD routines on AVX-512 machines and the C library's elsewhere, and the two differ
in the last bit: S3's shares, and every byte after them, differed between two machines)."""

from __future__ import annotations

import ast
import hashlib
import math
from pathlib import Path

import numpy as np
from hypothesis import given, strategies as st

from engine.core.detmath import det_exp, det_log

ROOT = Path(__file__).resolve().parents[2]


def _ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    return np.abs(got - want) / np.spacing(np.abs(want))


def _grid() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20261204)
    logs = np.concatenate([rng.uniform(0.0, 1.0, 4000), 10.0 ** rng.uniform(-300, 300, 4000), [5e-324, 1e-310, 1.0]])
    exps = np.concatenate([rng.uniform(-745.0, 0.0, 4000), rng.uniform(-1.0, 1.0, 4000), [0.0, -744.4]])
    return logs, exps


def test_within_two_ulps_of_the_c_library():
    logs, exps = _grid()
    assert _ulps(det_log(logs), np.array([math.log(v) for v in logs])).max() <= 2.0
    want = np.array([math.exp(v) for v in exps])
    normal = want >= np.finfo(np.float64).tiny   # below it, the subnormals: within two of their steps
    assert _ulps(det_exp(exps)[normal], want[normal]).max() <= 2.0
    assert np.abs(det_exp(exps)[~normal] - want[~normal]).max() <= 2 * 5e-324


def test_special_values():
    assert det_log(np.array([0.0, -1.0, np.inf, np.nan, 1.0])).tolist()[0] == -np.inf
    out = det_log(np.array([0.0, -1.0, np.inf, np.nan, 1.0]))
    assert np.isnan(out[1]) and out[2] == np.inf and np.isnan(out[3]) and out[4] == 0.0
    out = det_exp(np.array([-np.inf, np.nan, 0.0, -800.0, 800.0]))
    assert out[0] == 0.0 and np.isnan(out[1]) and out[2] == 1.0 and out[3] == 0.0 and out[4] == np.inf


@given(st.floats(min_value=-700.0, max_value=700.0, allow_nan=False))
def test_exp_then_log_returns_the_argument(y):
    assert abs(float(det_log(det_exp(y))) - y) <= 4 * np.spacing(max(abs(y), 1.0))


def test_the_bits_are_pinned():
    """Computed once; any machine must give these bits (only IEEE-exact operations are used)."""
    logs, exps = _grid()
    assert hashlib.sha256(det_log(logs).tobytes()).hexdigest() == LOG_BITS
    assert hashlib.sha256(det_exp(exps).tobytes()).hexdigest() == EXP_BITS


def test_the_shares_never_call_numpys_log_or_exp():
    tree = ast.parse((ROOT / "engine" / "core" / "gamma.py").read_text())
    calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert not calls & {"np.log", "np.exp", "numpy.log", "numpy.exp", "math.log", "math.exp"}
    assert {"det_log", "det_exp"} <= calls


LOG_BITS = "4f260783cb461a9b19636c04f56a4596885492d98fa0336e7ed98ecbce2534dc"
EXP_BITS = "6e89f87224d1c1088df0d26863b2007206f5b22e0c474db76d14b5a43625064c"
