"""The engine's JSD against its entropy form on integer count vectors: symmetric, within [0, 1], zero exactly when
the two distributions are equal, and blind to scale."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from engine.metrics.fidelity import jsd
from tests.metrics.entropy_by_hand import JSD

VEC = st.lists(st.integers(0, 20), min_size=2, max_size=6)


@settings(max_examples=200, deadline=None)
@given(VEC, VEC)
def test_jsd_symmetric_bounded_zero_iff_equal(a, b):
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    if sum(a) == 0 or sum(b) == 0:
        return
    p, q = np.array(a, dtype=float), np.array(b, dtype=float)
    d = jsd(p, q)
    assert d == pytest.approx(jsd(q, p), abs=1e-15)
    assert 0.0 <= d <= 1.0 + 1e-12
    assert d == pytest.approx(JSD(list(p / p.sum()), list(q / q.sum())), abs=1e-12)
    equal = all(Fraction(x, sum(a)) == Fraction(y, sum(b)) for x, y in zip(a, b))
    if equal:
        assert d == 0.0
    else:
        assert d > 1e-10          # >= ~3.5e-9 for integer vectors summing to <= 120
    assert jsd(p, p) == 0.0
    assert jsd(3.0 * p, q) == pytest.approx(d, abs=1e-15)
