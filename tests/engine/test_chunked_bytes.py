"""Large tables are written and digested a row group at a time: the bytes and digests are the whole
table's, whatever the chunking."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.hashing import chunked_table_digest, table_digest
from engine.publish.serialize import ROW_GROUP_ROWS, parquet_bytes, parquet_bytes_chunked
from engine.states.lineage import LineageColumns, constant_strings


def _frame(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    zones = np.array(["Europe/Berlin", "Asia/Tokyo", "America/Argentina/Buenos_Aires"], dtype=object)
    return pd.DataFrame({"merchant_id": np.arange(n, dtype=np.uint64),
                         "tzid": pd.Series(zones[rng.integers(0, 3, n)]).astype("str"),
                         "share": rng.random(n), "count": rng.integers(0, 9, n),
                         "lineage": constant_strings("f" * 64, n), "notes": constant_strings(None, n)}, copy=False)


def test_parquet_written_a_row_group_at_a_time_is_the_whole_tables_file():
    frame = _frame(2 * ROW_GROUP_ROWS + 12345)
    chunked = parquet_bytes_chunked(len(frame), lambda a, b: frame.iloc[a:b])
    assert chunked == parquet_bytes(frame)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 40), st.integers(1, 45), st.sampled_from([(), ("notes",), ("share", "lineage")]))
def test_chunked_digest_equals_the_whole_tables_digest(rows, chunk, exclude):
    frame = _frame(rows, seed=rows)
    got = chunked_table_digest(rows, frame.columns, lambda c, a, b: frame[c].iloc[a:b], chunk, exclude=exclude)
    assert got == table_digest(frame, None, exclude=exclude)
    known = {"lineage": "f" * 64, "notes": None}   # constant columns encoded without being built
    assert chunked_table_digest(rows, frame.columns, lambda c, a, b: frame[c].iloc[a:b], chunk, exclude=exclude,
                                constants=known) == got


def test_lineage_slices_are_slices_of_the_whole_published_table():
    core = _frame(50)[["merchant_id", "tzid"]].rename(columns={"tzid": "legal_country_iso"})
    core["tzid"] = core["legal_country_iso"]
    core["share_drawn"] = np.linspace(0, 1, 50)
    values = {"seed": 7, "manifest_fingerprint": "a" * 64, "prior_pack_id": "p", "prior_pack_version": "1",
              "floor_policy_id": "f", "floor_policy_version": "2", "rng_module": "3A.S3",
              "rng_substream_label": "zone_dirichlet", "rng_event_id": None, "notes": None}
    extra = {"share_sum_country": np.ones(50), "alpha_sum_country": np.full(50, 2.5), "rng_stream_id": None}
    src = LineageColumns(core.assign(rng_stream_id="s"), "s3", values, {k: v for k, v in extra.items() if v is not None})
    whole = src.frame()
    for a, b in ((0, 7), (7, 50), (20, 20)):
        pd.testing.assert_frame_equal(src.frame(a, b).reset_index(drop=True), whole.iloc[a:b].reset_index(drop=True))
