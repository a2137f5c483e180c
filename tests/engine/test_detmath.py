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

from engine.core.detmath import c_log2, c_pow, det_exp, det_log

ROOT = Path(__file__).resolve().parents[2]


def _ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    return np.abs(got - want) / np.spacing(np.abs(want))


def _grid() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20261204)
    unit = rng.uniform(0.0, 1.0, 4000)
    powers = [math.pow(10.0, e) for e in rng.uniform(-300, 300, 4000)]   # the C library's: numpy's power is SIMD
    logs = np.concatenate([unit, powers, [5e-324, 1e-310, 1.0]])         # on AVX-512, with other bits
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


def test_c_pow_and_c_log2_are_the_c_librarys():
    logs, _ = _grid()
    assert c_pow(logs[:4000], -0.7).tolist() == [math.pow(v, -0.7) for v in logs[:4000]]
    out = c_pow(np.array([[4.0, -8.0], [1e300, 0.0]]), 1.5)   # numpy's answers outside math.pow's domain
    assert out.shape == (2, 2) and out[0, 0] == 8.0 and math.isnan(out[0, 1]) and out[1, 0] == math.inf
    assert c_log2(logs).tolist()[:4000] == [math.log2(v) for v in logs[:4000]]
    out = c_log2(np.array([0.0, -1.0, np.nan, np.inf, 8.0]))
    assert out[0] == -math.inf and math.isnan(out[1]) and math.isnan(out[2]) and out[3] == math.inf and out[4] == 3.0


def _constant(node) -> bool:
    return isinstance(node, ast.Constant) or (isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant))


def test_the_engine_never_calls_numpys_power_or_log2_where_its_bytes_are_made():
    """S3's size law and temperature, the synthetic catalogue, the country weights and the fidelity JSDs use
    c_pow / c_log2: numpy's own are CPU-dispatched (a machine with AVX512_ICL drew other S3 shares)."""
    for rel in ("engine/states/s3_shares.py", "engine/world/outlets.py", "engine/world/model.py",
                "engine/metrics/exact.py", "engine/chain/subsample.py", "engine/core/gamma.py"):
        tree = ast.parse((ROOT / rel).read_text())
        calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        assert not calls & {"np.power", "np.log2", "np.exp", "np.log", "numpy.power"}, rel
        powers = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow)
                  and not all(_constant(side) for side in (n.left, n.right))]   # 2 ** 64, 2.0 ** -53: Python's own
        assert not powers, (rel, powers)


def test_the_shares_never_call_numpys_log_or_exp():
    tree = ast.parse((ROOT / "engine" / "core" / "gamma.py").read_text())
    calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert not calls & {"np.log", "np.exp", "numpy.log", "numpy.exp", "math.log", "math.exp"}
    assert {"det_log", "det_exp"} <= calls


LOG_BITS = "4f260783cb461a9b19636c04f56a4596885492d98fa0336e7ed98ecbce2534dc"
EXP_BITS = "6e89f87224d1c1088df0d26863b2007206f5b22e0c474db76d14b5a43625064c"
