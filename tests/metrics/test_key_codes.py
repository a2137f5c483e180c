"""engine.metrics.keys.factorize: an Arrow-backed column is factorized once per Arrow data, and the answer is
pandas' own."""

import gc

import numpy as np
import pandas as pd
from hypothesis import given, settings, strategies as st

from engine.metrics import keys
from engine.states.common import take_strings


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["AA", "BB", "Z/a", "Europe/Paris", ""]), max_size=30))
def test_codes_are_pandas_own_for_arrow_and_object_columns(values):
    want_codes, want_uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=False)
    arrow = take_strings(np.asarray(values, dtype=object), np.arange(len(values)))
    for column in (arrow, pd.Series(values, dtype=object)):
        codes, uniques = keys.factorize(column)
        assert codes.tolist() == list(want_codes) and uniques.tolist() == [str(u) for u in want_uniques]


def test_one_arrow_data_is_factorized_once_and_forgotten_with_it(monkeypatch):
    column = take_strings(np.array(["BB", "AA"], dtype=object), np.array([0, 1, 1, 0]))
    calls = []
    real = pd.factorize
    monkeypatch.setattr(keys.pd, "factorize", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = keys.factorize(column)
    same_data = pd.DataFrame({"c": column, "n": range(4)})["c"]        # another frame over the same Arrow data
    assert keys.factorize(same_data) is first and len(calls) == 1
    assert not first[0].flags.writeable                                 # shared, so read-only
    held = len(keys._ARROW_CODES)
    del column, same_data, first
    gc.collect()
    assert len(keys._ARROW_CODES) == held - 1                           # the entry lives as long as the data
    other = take_strings(np.array(["BB", "AA"], dtype=object), np.array([1, 1]))
    assert keys.factorize(other)[0].tolist() == [0, 0] and len(calls) == 2
