"""A text merchant_id column is parsed exactly, whichever path reads it: Arrow's cast for plain digit runs, the
per-value parse for the rest ("7.0"), the same ids as Python's int() and the same refusals."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from engine.core.errors import EngineError
from engine.world.outlets import merchant_ids

UINT64_MAX = 2 ** 64 - 1
ids = st.one_of(st.integers(0, 2 ** 53), st.integers(2 ** 53, UINT64_MAX))
blanks = st.sampled_from(["", " ", "  ", "\t"])


def _reference(values: list[str]) -> list[int]:
    return [int(v.strip().partition(".")[0]) for v in values]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(blanks, ids, st.integers(0, 3), blanks, st.booleans()), min_size=1, max_size=40),
       st.sampled_from(["object", "string[pyarrow]"]))
def test_text_ids_parse_exactly_on_either_path(rows, dtype):
    """Leading zeros (an id of at most 20 characters), blanks around it, and sometimes a ".0" suffix: the parsed ids
    are Python's int() of each, bit for bit above 2**53."""
    values = [f"{a}{'0' * zeros}{i}{'.0' if dot else ''}{b}" for a, i, zeros, b, dot in rows
              if len(str(i)) + zeros <= 20]
    if not values:
        return
    got = merchant_ids(pd.Series(values, dtype=dtype), "t")
    assert got.dtype == np.uint64 and got.tolist() == _reference(values)


@pytest.mark.parametrize("dtype", ["object", "string[pyarrow]"])
@pytest.mark.parametrize("bad", [str(UINT64_MAX + 1), "99999999999999999999", "-1", "1e5", "0x10", "", "７"])
def test_text_ids_outside_uint64_or_not_digits_are_refused(dtype, bad):
    with pytest.raises(EngineError) as err:
        merchant_ids(pd.Series(["1", bad, "2"], dtype=dtype), "cat.csv")
    assert err.value.code == "E3A_WLD_001_INPUT_INVALID" and "merchant_id must be an integer" in err.value.cause


def test_the_largest_id_and_an_empty_column():
    assert merchant_ids(pd.Series([str(UINT64_MAX), "0"], dtype="string[pyarrow]"), "t").tolist() == [UINT64_MAX, 0]
    assert merchant_ids(pd.Series([], dtype="string[pyarrow]"), "t").tolist() == []
