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


def _reference_ranks(columns):
    """Rank codes from scratch: each string's rank in the sorted union of every column's strings."""
    vocab = sorted({str(v) for col in columns for v in col})
    return [np.array([vocab.index(str(v)) for v in col], dtype=np.int32) for col in columns]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["AA", "BB", "Z/a", "Europe/Paris", "", "nan"]), max_size=12),
                min_size=1, max_size=4), st.booleans())
def test_rank_codes_equal_a_fresh_ranking_however_often_asked(columns, arrow):
    make = (lambda v: take_strings(np.asarray(v, dtype=object), np.arange(len(v)))) if arrow else \
        (lambda v: pd.Series(v, dtype=object))
    series = [make(v) for v in columns]
    want = _reference_ranks(columns)
    for _ in range(2):   # the second time answers from the remembered vocabulary (Arrow data: same uniques)
        got = keys.string_codes(series)
        assert [g.tolist() for g in got] == [w.tolist() for w in want]
    # the same columns in another grouping share another vocabulary: never the first one's answer
    if len(series) > 1:
        assert keys.string_codes(series[1:])[0].tolist() == _reference_ranks(columns[1:])[0].tolist()


def test_a_remembered_vocabulary_is_only_reused_for_the_arrays_it_was_built_from():
    a = take_strings(np.array(["BB", "AA"], dtype=object), np.array([0, 1]))
    b = take_strings(np.array(["CC", "AA"], dtype=object), np.array([0, 1]))
    assert [c.tolist() for c in keys.string_codes([a, b])] == [[1, 0], [2, 0]]
    writable = (np.array([0, 1], dtype=np.int32), np.array(["BB", "AA"]))   # not factorize's: never remembered
    held = len(keys._RANKS)
    assert keys.rank_codes([writable])[0].tolist() == [1, 0] and len(keys._RANKS) == held
    writable[1][:] = ["AA", "BB"]                                           # its content may change under it
    assert keys.rank_codes([writable])[0].tolist() == [0, 1]                # a fresh ranking
    for i in range(keys.RANKS_REMEMBERED + 5):                              # bounded
        keys.string_codes([take_strings(np.array([f"X{i}"], dtype=object), np.array([0]))])
    assert len(keys._RANKS) <= keys.RANKS_REMEMBERED


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["AA", "BB", "CC", "Z/a", "Europe/Paris"]), max_size=8, unique=True),
       st.lists(st.sampled_from(["AA", "BB", "CC", "DD", "Z/a", "Nowhere/Zone", "", "a"]), max_size=30))
def test_codes_in_a_vocabulary_made_without_the_column(vocab_values, values):
    vocab = np.unique(np.asarray(vocab_values, dtype=str))
    for column in (take_strings(np.asarray(values, dtype=object), np.arange(len(values))),
                   pd.Series(values, dtype=object)):
        codes = keys.codes_in(vocab, column)
        assert codes.dtype == np.int32 and len(codes) == len(values)
        for i, v in enumerate(values):   # a value in the vocabulary gets its rank, one outside comes after them all
            assert codes[i] == (int(np.searchsorted(vocab, v)) if v in vocab_values else codes[i])
            assert (codes[i] < len(vocab)) == (v in vocab_values)
            assert all((codes[i] == codes[j]) == (v == values[j]) for j in range(len(values)))
        outside = sorted({v for v in values if v not in vocab_values})
        assert sorted({int(c) for c in codes if c >= len(vocab)}) == list(range(len(vocab), len(vocab) + len(outside)))


def test_vocabulary_codes_rank_in_the_vocabulary_they_return():
    a, b = (keys.factorize(pd.Series(v, dtype=object)) for v in (["BB", "AA", "BB"], ["CC", "AA"]))
    (ca, cb), vocab = keys.vocabulary_codes([a, b])
    assert vocab.tolist() == ["AA", "BB", "CC"] and ca.tolist() == [1, 0, 1] and cb.tolist() == [2, 0]
    assert not vocab.flags.writeable                     # remembered (factorize's read-only arrays): shared
    assert keys.vocabulary_codes([a, b])[1] is vocab
