"""METRICS §0 order statistics: nearest rank with ties rounding up, even-n median, empty -> 0.0."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.metrics.quantiles import median, nearest_rank_index, p75, p90, quantile_nearest, rate


def test_spec_examples():
    # n=3, q=0.75: (3-1)*0.75 + 0.5 = 2.0 -> index 2
    assert nearest_rank_index(3, 0.75) == 2
    assert p75([10.0, 30.0, 20.0]) == 30.0
    # n=11, q=0.25: (11-1)*0.25 + 0.5 = 3.0 -> index 3 (numpy 'nearest' would round 2.5 to even 2)
    assert nearest_rank_index(11, 0.25) == 3
    assert quantile_nearest(range(11), 0.25) == 3.0
    assert np.quantile(np.arange(11), 0.25, method="nearest") == 2.0  # the rule we must NOT follow
    # n=4, q=0.9: 3*0.9 + 0.5 = 3.2 -> 3 ; n=2, q=0.75: 1*0.75+0.5 = 1.25 -> 1
    assert p90([4.0, 1.0, 3.0, 2.0]) == 4.0
    assert p75([1.0, 2.0]) == 2.0


def test_median_rules():
    assert median([3.0, 1.0, 2.0]) == 2.0            # odd -> middle
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5       # even -> mean of the two middles
    assert median([1.0, 1.0, 2.0, 10.0]) == 1.5
    assert median([7.0]) == 7.0


def test_empty_population_is_zero():
    assert median([]) == 0.0
    assert p75([]) == 0.0
    assert p90(np.array([])) == 0.0
    assert rate([]) == 0.0


def test_bad_quantile_rejected():
    with pytest.raises(ValueError):
        nearest_rank_index(3, 1.5)
    with pytest.raises(ValueError):
        nearest_rank_index(0, 0.5)


QUANTILES = st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0] + [k / 20 for k in range(21)])
VALUES = st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=60)


@settings(max_examples=100, deadline=None)
@given(VALUES, QUANTILES)
def test_nearest_rank_equals_brute_force(values, q):
    """Brute force: the rank closest to (n-1)q in exact arithmetic, ties going to the higher rank."""
    xs = sorted(values)
    target = (len(xs) - 1) * Fraction(q).limit_denominator(1000)
    best = min(range(len(xs)), key=lambda i: (abs(i - target), -i))
    assert quantile_nearest(values, q) == xs[best]


@settings(max_examples=100, deadline=None)
@given(VALUES)
def test_median_equals_brute_force(values):
    xs = sorted(values)
    n = len(xs)
    # the median is a value m with at least half the sample on each side; for even n the midpoint
    expected = xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
    assert median(values) == expected
    assert median(values) == pytest.approx(float(np.median(values)), rel=1e-12, abs=1e-9)
    assert not math.isnan(median(values))
