"""``non_finite_path``'s fast walk (no path strings) returns exactly what the path-building walk does."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.strict import non_finite_path


def _reference(value, at: str = "") -> str | None:
    """The definition, recursively: depth first, a container's children last to first (what the engine's
    explicit stack visits first)."""
    if isinstance(value, float) and not math.isfinite(value):
        return at or "(top level)"
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:   # an integer no float holds: as unusable as inf
            return at or "(top level)"
    if isinstance(value, dict):
        children = [(v, f"{at}.{k}" if at else str(k)) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        children = [(v, f"{at}[{i}]") for i, v in enumerate(value)]
    else:
        return None
    for child, path in reversed(children):
        found = _reference(child, path)
        if found is not None:
            return found
    return None


leaves = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                   st.integers(min_value=2 ** 1020, max_value=2 ** 1030).map(lambda n: n * (-1) ** (n % 2)),
                   st.text(max_size=3), st.booleans(), st.none())
docs = st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                    st.dictionaries(st.text(max_size=3), inner, max_size=4)),
                    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(docs)
def test_fast_walk_equals_the_path_walk(doc):
    assert non_finite_path(doc) == _reference(doc)


def test_a_numpy_float_and_a_tuple_are_walked():
    import numpy as np

    assert non_finite_path({"a": (1.0, np.float64("nan"))}) == "a[1]"
    assert non_finite_path({"a": [1.0, {"b": float("inf")}]}) == "a[1].b"
    assert non_finite_path(float("nan")) == "(top level)"
    assert non_finite_path({"a": [1.0, 2]}) is None
    assert non_finite_path({"a": [1.0, int("9" * 400)]}) == "a[1]"   # YAML's exact int of 400 digits
    assert non_finite_path({"a": [1.0, -int("9" * 400), True]}) == "a[1]"
    assert non_finite_path({"a": [int(1.7976931348623157e308), 2 ** 64]}) is None   # the largest a float holds
