"""The column-at-a-time JSON text of the RNG logs is byte for byte what Python's json writes row by row:
floats are ``repr`` (Arrow's own text is kept only where it provably agrees), integers exact to 2**64 - 1,
identifiers quoted as they are or refused."""

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from engine.core.hashing import canonical_json
from engine.publish.jsonl_text import float_text, id_text, int_text, lines, literal
from engine.publish.members import rng_logs

FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
AROUND_EDGES = st.sampled_from([0.0, -0.0, 1e-4, -1e-4, 9.999999999999999e-05, 1e9, 999999999.9999999, 1e16,
                                1e15, 3.0, 123456789.0, 5e-324, 1.7976931348623157e308, 0.1, 2.5e-7, 1e22])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(FLOATS, AROUND_EDGES, st.floats(1e-5, 2e9)), min_size=1, max_size=60))
def test_float_text_is_pythons_repr(values):
    assert float_text(np.array(values, dtype=np.float64)).to_pylist() == [repr(float(v)) for v in values]


def test_float_text_over_half_a_million_values_of_every_magnitude():
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.integers(0, 2 ** 64 - 1, 150_000, dtype=np.uint64).view(np.float64),
                        rng.random(150_000) * 10.0 ** rng.integers(-8, 14, 150_000).astype(float),
                        np.round(rng.random(70_000) * 1000, 3), np.arange(0, 5000, dtype=np.float64)])
    assert float_text(x).to_pylist() == [repr(float(v)) for v in x]


@given(st.lists(st.integers(0, 2 ** 64 - 1), min_size=1, max_size=40))
def test_unsigned_int_text_is_exact(values):
    assert int_text(np.array(values, dtype=np.uint64)).to_pylist() == [str(v) for v in values]


@given(st.lists(st.integers(-2 ** 63, 2 ** 63 - 1), min_size=1, max_size=40))
def test_signed_int_text_is_exact(values):
    assert int_text(np.array(values, dtype=np.int64)).to_pylist() == [str(v) for v in values]


def test_int_text_refuses_floats():
    with pytest.raises(TypeError):
        int_text(np.array([1.0]))


@pytest.mark.parametrize("bad", ['a"b', "a\\b", "Zürich", None])
def test_an_identifier_json_would_escape_is_refused(bad):
    with pytest.raises(ValueError, match="JSON escaping"):
        id_text(pd.Series(["US", bad], dtype=object))


def test_lines_join_pieces_per_row_and_count_them():
    pieces = [literal('{"a":'), int_text(np.array([1, 22])), literal(',"c":'), id_text(["X", "YZ"]), literal("}\n")]
    assert lines(pieces, 2) == b'{"a":1,"c":"X"}\n{"a":22,"c":"YZ"}\n'
    assert lines(pieces, 0) == b""
    with pytest.raises(ValueError, match="not 3"):
        lines(pieces, 3)


IDENTITY = {"manifest_fingerprint": "f" * 64, "parameter_hash": "a" * 64, "run_id": "r" * 32, "seed": 101,
            "engine_version": "test"}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2 ** 64 - 1), st.sampled_from(["US", "RU", "AQ"]),
                          st.integers(1, 40), st.integers(0, 2 ** 40), st.integers(1, 9), st.integers(1, 99),
                          st.floats(1e-6, 1e12), st.floats(1e-12, 5.0), st.floats(0.5, 1e10)),
                min_size=0, max_size=25))
def test_rng_logs_are_the_rows_canonical_json(rows):
    cols = ["merchant_id", "country_iso", "zone_count", "rng_counter_before", "blocks", "draws", "alpha_sum_country",
            "alpha_min", "alpha_max"]
    events = pd.DataFrame(rows, columns=cols).astype({"merchant_id": np.uint64, "zone_count": np.int64,
                                                      "rng_counter_before": np.int64, "blocks": np.int64,
                                                      "draws": np.int64, "alpha_sum_country": np.float64,
                                                      "alpha_min": np.float64, "alpha_max": np.float64})
    events["rng_counter_after"] = events["rng_counter_before"] + events["blocks"]
    events["rng_stream_id"] = [f"{c}:{m}" for m, c in zip(events["merchant_id"], events["country_iso"])]
    ev, tr, _ = rng_logs(IDENTITY, events)
    want_ev, want_tr, blocks, draws = [], [], 0, 0
    for i, r in enumerate(events.itertuples(index=False)):
        want_ev.append({"alpha_max": float(r.alpha_max), "alpha_min": float(r.alpha_min),
                        "alpha_sum_country": float(r.alpha_sum_country), "blocks": int(r.blocks),
                        "country_iso": r.country_iso, "draws": str(int(r.draws)),
                        "manifest_fingerprint": IDENTITY["manifest_fingerprint"], "merchant_id": int(r.merchant_id),
                        "module": "3A.S3", "parameter_hash": IDENTITY["parameter_hash"], "rng_counter_after_hi": 0,
                        "rng_counter_after_lo": int(r.rng_counter_after), "rng_counter_before_hi": 0,
                        "rng_counter_before_lo": int(r.rng_counter_before), "rng_stream_id": r.rng_stream_id,
                        "run_id": IDENTITY["run_id"], "seed": 101, "substream_label": "zone_dirichlet",
                        "zone_count": int(r.zone_count)})
        blocks, draws = blocks + int(r.blocks), draws + int(r.draws)
        want_tr.append({"blocks_total": blocks, "draws_total": str(draws), "events_total": i + 1, "module": "3A.S3",
                        "run_id": IDENTITY["run_id"], "seed": 101, "substream_label": "zone_dirichlet"})
    assert ev == b"".join(canonical_json(d) + b"\n" for d in want_ev)
    assert tr == b"".join(canonical_json(d) + b"\n" for d in want_tr)
    assert [json.loads(line)["merchant_id"] for line in ev.splitlines()] == [int(m) for m in events["merchant_id"]]
