"""S5 -> S7 as one pure step over a scored run: lineage, egress, the S6 report and the S7 seal.

This is the half of the chain that produces bytes. :class:`engine.chain.result.ChainResult` calls it the first
time a published attribute is read (``s6_report``, ``members``, ``flag`` ...), and
:func:`engine.publish.store.materialise` writes what it returns. Its seconds are booked to S5, S6 and S7.

Large tables never exist whole with their lineage columns: each is written and digested a row group at
a time from its core (:class:`engine.states.lineage.LineageColumns`), and S5's checks read zone_alloc
back from the bytes just written (so they verify what is published, not a copy of it).
"""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.chain.steps import STATE_STATUS
from engine.core.hashing import chunked_table_digest, sha256_hex
from engine.publish.members import build_members, rng_logs
from engine.publish.serialize import ROW_GROUP_ROWS, json_bytes, parquet_bytes_chunked
from engine.states import s5_egress, s6_validation
from engine.states.lineage import LineageColumns, lineage_values
from engine.states.s7_bundle import index_document, passed_flag


@dataclass
class Bundle:
    """S5 -> S7 of a run: the S6 report and the S7 seal (exact bytes in members); ``tables`` is set when
    the published tables were read from a store."""

    universe_doc: dict
    s6_report: dict
    s6_issues: pd.DataFrame
    s6_receipt: dict
    members: list
    index: dict
    flag: str
    s7: dict
    tables: dict | None = None


S7_REFUSED = {"status": "FAIL", "error_code": "E3A_S7_001_S6_NOT_PASS"}
ZONE_ALLOC_CHECKED = ["merchant_id", "legal_country_iso", "tzid", "zone_site_count", "zone_site_count_sum",
                      "site_count", s5_egress.ROUTING]


def published_columns(result, lin: dict) -> dict[str, LineageColumns]:
    """Every published table of a run as column slices of its cores (``lin``: the run's lineage values)."""
    sources = {name: LineageColumns(result.cores[name], name, lin) for name in ("s1", "s2", "s3", "s4")}
    sources["zone_alloc"] = s5_egress.zone_alloc_columns(result.cores["zone_alloc"], lin)
    return sources


class ParquetColumns:
    """A published parquet member read back one whole column at a time (strings dictionary-encoded, so a
    constant lineage column is one value and small indices), served as slices of the column in hand."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.schema = pq.read_schema(io.BytesIO(data))
        self.rows = pq.ParquetFile(io.BytesIO(data)).metadata.num_rows
        self.names = self.schema.names
        self._held: tuple[str, pa.ChunkedArray] | None = None
        self._strings: dict[str, pa.ChunkedArray] = {}   # non-constant string columns read by constants()

    def read(self, columns: list[str]) -> pa.Table:
        strings = [c for c in columns if pa.types.is_string(self.schema.field(c).type)
                   or pa.types.is_large_string(self.schema.field(c).type)]
        return pq.read_table(io.BytesIO(self.data), columns=columns, read_dictionary=strings)

    def constants(self) -> dict[str, str | None]:
        """The string columns holding one value (or only nulls) on every row, read from their dictionaries:
        the digest encodes those without decoding them, and what it encodes is what the file holds."""
        found = {}
        for field in self.schema:
            if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
                continue
            col = self.read([field.name]).column(0)
            used = set()
            for chunk in col.chunks:
                used |= set(chunk.dictionary.take(pc.drop_null(pc.unique(chunk.indices))).to_pylist())
            if col.null_count == len(col):
                found[field.name] = None
            elif col.null_count == 0 and len(used) == 1:
                found[field.name] = used.pop()
            else:
                self._strings[field.name] = col   # dictionary-encoded: small; the digest reads it next
        return found

    def column(self, name: str, a: int, b: int) -> pd.Series:
        if self._held is None or self._held[0] != name:
            self._held = None                       # one column in memory at a time
            col = self._strings.pop(name, None)
            self._held = (name, col if col is not None else self.read([name]).column(0))
        return self._held[1].slice(a, b - a).to_pandas()


def published_tables(result) -> dict[str, pd.DataFrame]:
    """The published tables as DataFrames (lineage and routing hash attached): for callers that want them.
    The routing hash is the bundle's when its bytes exist, else zone_alloc is digested for it."""
    lin = lineage_values(result.identity, result.publish_inputs.policies)
    sources = published_columns(result, lin)
    if result.bundled:
        sources["zone_alloc"].values[s5_egress.ROUTING] = result.bundle.universe_doc["routing_universe_hash"]
    else:
        s5_egress.egress(sources["zone_alloc"], sources["s2"].frame(), lin, result.publish_inputs.policies.digests)
    return {name: src.frame() for name, src in sources.items()}


def _s5(result) -> tuple[dict, dict]:
    """-> (published parquet bytes per table, zone_alloc_universe_hash document)."""
    lin = lineage_values(result.identity, result.publish_inputs.policies)
    sources = published_columns(result, lin)
    za = sources.pop("zone_alloc")

    def zone_alloc_side() -> tuple[bytes, dict]:   # its digest sets its routing hash, then it is written
        doc = s5_egress.egress(za, sources["s2"].frame(), lin, result.publish_inputs.policies.digests)
        return parquet_bytes_chunked(za.rows, za.frame), doc

    # two independent sides on the two cores (compression and hashing run outside the GIL); same bytes
    with ThreadPoolExecutor(max_workers=2) as pool:
        za_side = pool.submit(zone_alloc_side)
        table_bytes = {name: parquet_bytes_chunked(src.rows, src.frame) for name, src in sources.items()}
        table_bytes["zone_alloc"], universe_doc = za_side.result()
    return table_bytes, universe_doc


def zone_alloc_checked(data: bytes) -> tuple[pd.DataFrame, str]:
    """``zone_alloc``'s bytes as S5's checks read them: the columns they check, and the table's digest (its routing
    hash column excluded) computed a row group and a column at a time, never the whole table in memory (S6 at
    publish, and ``engine verify`` again)."""
    published = ParquetColumns(data)
    digest = chunked_table_digest(published.rows, published.names, published.column, ROW_GROUP_ROWS,
                                  exclude=(s5_egress.ROUTING,), constants=published.constants())
    published._held = None
    return published.read(ZONE_ALLOC_CHECKED).to_pandas(), digest


def _s6(result, table_bytes: dict, universe_doc: dict):
    """S6's report: the S0-S4 findings made while scoring, and S5's checks on the bytes just built."""
    inputs = result.publish_inputs
    za, digest = zone_alloc_checked(table_bytes["zone_alloc"])
    s2 = pq.read_table(io.BytesIO(table_bytes["s2"])).to_pandas()
    egress = s6_validation.validate_egress(s2, result.cores["s4"], za, universe_doc, inputs.policies.digests,
                                           STATE_STATUS, zone_alloc_digest=digest)
    report, issues = s6_validation.finish(result.identity, inputs.s6_core, egress)
    report["realism"] = inputs.realism
    if inputs.realism_blocks:
        report["overall_status"] = "FAIL"
    return report, issues


def _s7(result, table_bytes: dict, logs: tuple, universe_doc: dict, report: dict, issues):
    members, receipt6 = build_members(result.identity, result.receipt, result.sealed, table_bytes, logs,
                                      universe_doc, report, issues)
    if report["overall_status"] != "PASS":
        return members, receipt6, {}, "", dict(S7_REFUSED)
    index = index_document(result.identity, members, sha256_hex(json_bytes(receipt6)))
    flag = passed_flag(index)
    return members, receipt6, index, flag, {"status": "PASS", "error_code": None,
                                            "bundle_sha256_hex": flag.split(" = ")[1].strip(),
                                            "member_count": len(index["members"])}


def build_bundle(result) -> Bundle:
    """-> the run's Bundle; books the wall seconds of S5, S6 and S7 in ``result.seconds`` (S7's RNG evidence
    logs are written on a second thread while S6 checks the bytes, so S7 books only what is left)."""
    clock = time.perf_counter()
    table_bytes, universe_doc = _s5(result)
    t5 = time.perf_counter()
    pa.default_memory_pool().release_unused()
    with ThreadPoolExecutor(max_workers=1) as pool:
        logs = pool.submit(rng_logs, result.identity, result.events)
        report, issues = _s6(result, table_bytes, universe_doc)
        t6 = time.perf_counter()
        members, receipt6, index, flag, s7 = _s7(result, table_bytes, logs.result(), universe_doc, report, issues)
    t7 = time.perf_counter()
    for state, seconds in (("S5", t5 - clock), ("S6", t6 - t5), ("S7", t7 - t6)):
        result.seconds[state] = result.seconds.get(state, 0.0) + seconds
    return Bundle(universe_doc=universe_doc, s6_report=report, s6_issues=issues, s6_receipt=receipt6,
                  members=members, index=index, flag=flag, s7=s7)
