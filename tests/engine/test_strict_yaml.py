"""The strict YAML reader parses a text once per process (engine.core.strict._document): every caller gets a
document equal to a fresh strict parse and its own copy, and a refusal is raised every time, never kept."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from engine.core.errors import EngineError
from engine.core.strict import _StrictLoader, parse_yaml
from tests.tuning.conftest import REPO


def _fresh(text: str):
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


@pytest.mark.parametrize("name", ["country_zone_alphas.yaml", "zone_floor_policy.yaml", "zone_mixture_policy.yaml"])
def test_a_policy_file_read_again_is_the_fresh_parse_and_a_copy_of_its_own(name):
    raw = (REPO / "policies" / name).read_bytes()
    first, again = parse_yaml(raw, name, "E3A_TEST"), parse_yaml(raw, name, "E3A_TEST")
    assert first == again == _fresh(raw.decode("utf-8")) and first is not again
    key = next(iter(first))
    first[key] = "changed by a caller"
    assert parse_yaml(raw, name, "E3A_TEST")[key] != "changed by a caller"


_SCALAR = st.one_of(st.integers(-10 ** 6, 10 ** 6), st.floats(allow_nan=False, allow_infinity=False),
                    st.text("abcXYZ _-", min_size=1, max_size=8), st.booleans(), st.none())
_DOC = st.recursive(_SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text("abcdefgh", min_size=1, max_size=6), inner, max_size=4)),
    max_leaves=20)


@settings(max_examples=150, deadline=None)
@given(_DOC)
def test_any_document_reads_as_its_fresh_parse_twice(doc):
    text = yaml.safe_dump(doc, sort_keys=False)
    assert parse_yaml(text, "doc", "E3A_TEST") == parse_yaml(text, "doc", "E3A_TEST") == _fresh(text)


def test_a_refused_text_is_refused_every_time_with_its_own_source():
    bad = "a: 1\na: 2\n"   # a duplicate key
    for source in ("first.yaml", "second.yaml"):
        with pytest.raises(EngineError) as err:
            parse_yaml(bad, source, "E3A_TEST")
        assert str(err.value).startswith("E3A_TEST") and source in str(err.value)
