"""The bundle's content checked again from its own files: S6 re-run on the published tables.

The digests, the flag and the identity (:mod:`engine.publish.verify_bundle`) prove that the files are the ones
sealed; they cannot prove that what was sealed is sound: a bundle whose members were edited and then re-sealed
(new digests, index and flag) passes them all. :func:`recheck_s6` runs S6's own checks
(:mod:`engine.states.s6_validation`) on the published S1-S4 tables, the RNG events and ``zone_alloc``: count
conservation per pair (S4 and ``zone_alloc`` against S1's site count), the pair-and-zone domain (every escalated
pair on every zone of its country, nothing else), shares summing to one, the events' accounting, and the routing
hash recomputed from the tables. Any failing check, or a report that does not recompute to the one the bundle
holds, is ``E3A_VER_001_BUNDLE_TAMPERED`` naming the checks.

Only the bundle is read: Z(c) is the S2 priors' domain (S6 requires the priors to cover Z(c) exactly), and the
policies' digests are the ones the sealed inputs record.
"""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from engine.chain.steps import STATE_STATUS
from engine.core.errors import E_BUNDLE_TAMPERED, EngineError
from engine.publish.bundle import zone_alloc_checked
from engine.publish.members import TABLE_MEMBERS
from engine.publish.verify_values import value_failures
from engine.states import s6_validation

NEEDED = (*TABLE_MEMBERS.values(), "rng_event_zone_dirichlet", "rng_trace_log", "s0_gate_receipt_3A",
          "sealed_inputs_3A", "zone_alloc_universe_hash", "s6_validation_report_3A")
EVENT_COLUMNS = ("merchant_id", "country_iso", "zone_count", "blocks")
_PAIR = ["merchant_id", "legal_country_iso"]
READ_COLUMNS = {   # what S6 reads of each table (S2 whole: S5 digests every column, and its values are checked)
    "s1_escalation_queue": [*_PAIR, "site_count", "zone_count_country", "is_escalated"],
    "s3_zone_shares": [*_PAIR, "tzid", "share_drawn"],
    "s4_zone_counts": [*_PAIR, "tzid", "zone_site_count", "zone_site_count_sum"]}
RECOMPUTED = ("overall_status", "checks", "metrics", "manifest_fingerprint", "parameter_hash")
_TEXT, _COUNT, _REAL = pa.string(), pa.int64(), pa.float64()
READ_TYPES = {   # the type the engine writes each column S6 and the value checks read in: another is tampering (text
    # may also come as large_string, as pandas writes it: the same text)
    "merchant_id": pa.uint64(), "legal_country_iso": _TEXT, "country_iso": _TEXT, "tzid": _TEXT,
    "site_count": _COUNT, "zone_count_country": _COUNT, "zone_site_count": _COUNT, "zone_site_count_sum": _COUNT,
    "is_escalated": pa.bool_(), "floor_applied": pa.bool_(), "bump_applied": pa.bool_(), "share_drawn": _REAL,
    "alpha_raw": _REAL, "alpha_effective": _REAL, "alpha_sum_country": _REAL, "share_effective": _REAL}


def _tampered(msg: str) -> EngineError:
    return EngineError(E_BUNDLE_TAMPERED, msg)


def _rows(lid: str, read):
    """``read()``, a member's rows; rows that do not decode (its footer was read already) are tampering."""
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - any decoder failure
        raise _tampered(f"member {lid}: its rows do not read ({(str(exc).splitlines() or [''])[0][:120]})") from None


def _table(lid: str, data: bytes) -> pd.DataFrame:
    table = _rows(lid, lambda: pq.read_table(pa.BufferReader(data), columns=READ_COLUMNS.get(lid)))
    wrong = [f"{f.name} is {f.type}, not {READ_TYPES[f.name]}" for f in table.schema
             if f.name in READ_TYPES and f.type != READ_TYPES[f.name]
             and not (READ_TYPES[f.name] == _TEXT and f.type == pa.large_string())]
    if wrong:   # S6's comparisons would read text, floats or other widths as the engine's values, or coerce them
        more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
        raise _tampered(f"member {lid}: column {wrong[0]}{more}")
    return _rows(lid, table.to_pandas)


def _events(data: bytes) -> pd.DataFrame:
    """The RNG event lines as S6 reads the events (counters and draws as integers; the engine writes every counter's
    high word 0)."""
    names = [*EVENT_COLUMNS, "draws", "rng_counter_before_lo", "rng_counter_before_hi", "rng_counter_after_lo",
             "rng_counter_after_hi"]
    schema = pa.schema([(n, pa.uint64() if n == "merchant_id" else pa.string() if n in ("country_iso", "draws")
                         else pa.int64()) for n in names])   # merchant ids past 2^63 stay exact
    options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    frame = (pa_json.read_json(pa.BufferReader(data), parse_options=options).to_pandas() if data.strip()
             else pd.DataFrame(columns=names))
    if len(frame) and (frame["rng_counter_before_hi"].ne(0).any() or frame["rng_counter_after_hi"].ne(0).any()):
        raise _tampered("member rng_event_zone_dirichlet: a counter's high word is not 0")
    out = frame[list(EVENT_COLUMNS)].copy()
    out["draws"] = frame["draws"].astype("int64")
    out["rng_counter_before"] = frame["rng_counter_before_lo"].astype("int64")
    out["rng_counter_after"] = frame["rng_counter_after_lo"].astype("int64")
    return out


def _trace_totals(data: bytes) -> dict:
    """The trace log's last line: the totals S7 published beside the events (none: no event)."""
    lines = data.rstrip(b"\n").rsplit(b"\n", 1)
    last = json.loads(lines[-1]) if lines[-1] else {"events_total": 0, "blocks_total": 0, "draws_total": "0"}
    return {"events_total": int(last["events_total"]), "blocks_total": int(last["blocks_total"]),
            "draws_total": int(last["draws_total"])}


def _sealed_policies(sealed: object) -> dict[str, str]:
    if not isinstance(sealed, list) or not all(isinstance(r, dict) for r in sealed):
        raise _tampered("member sealed_inputs_3A: not a list of sealed inputs")
    return {str(r.get("logical_id")): str(r.get("sha256_hex")) for r in sealed if r.get("artefact_kind") == "policy"}


def recheck_s6(members: dict[str, bytes], identity: dict) -> dict:
    """S6 again on the bundle's members (``members``: logical id -> bytes, digests already checked; ``identity``:
    the run's, from :func:`engine.publish.verify_bundle.check_identity`). Returns the recomputed report."""
    try:
        receipt, sealed, universe_doc, recorded = (json.loads(members[lid]) for lid in (
            "s0_gate_receipt_3A", "sealed_inputs_3A", "zone_alloc_universe_hash", "s6_validation_report_3A"))
        events, totals = _events(members["rng_event_zone_dirichlet"]), _trace_totals(members["rng_trace_log"])
    except (ValueError, TypeError, KeyError, OverflowError, pa.ArrowException) as exc:   # Infinity in a total
        raise _tampered(f"a receipt or the RNG events do not read ({str(exc)[:120]})") from None
    if not isinstance(recorded, dict) or not isinstance(universe_doc, dict):
        raise _tampered("member s6_validation_report_3A or zone_alloc_universe_hash: not a JSON object")
    tables = {key: _table(lid, members[lid]) for key, lid in TABLE_MEMBERS.items() if key != "zone_alloc"}
    # S5's columns and digest, as S6 read them at publish (never the whole table in memory)
    tables["zone_alloc"], za_digest = _rows("zone_alloc", lambda: zone_alloc_checked(members["zone_alloc"]))
    policies = _sealed_policies(sealed)
    try:
        universe = tables["s2"][["country_iso", "tzid"]]
        core = s6_validation.validate_core(identity, receipt, sealed, tables, events, totals, policies,
                                           STATE_STATUS, universe)
        egress = s6_validation.validate_egress(tables["s2"], tables["s4"], tables["zone_alloc"], universe_doc,
                                               policies, STATE_STATUS, zone_alloc_digest=za_digest)
    except (KeyError, TypeError, ValueError, AttributeError, pa.ArrowException) as exc:   # a wrong kind, a missing
        # key, text that is not UTF-8
        raise _tampered(f"S6 cannot run on the bundle's tables ({type(exc).__name__}: {str(exc)[:120]})") from None
    report, _ = s6_validation.finish(identity, core, egress)
    failed = [f"{c['check_id']} ({c['affected_count']})" for c in report["checks"] if c["status"] != "PASS"]
    if failed:
        raise _tampered(f"the bundle's tables fail S6 again: {', '.join(failed)}")
    differ = [k for k in RECOMPUTED if recorded.get(k) != report[k]]
    if differ:
        raise _tampered(f"the S6 report does not recompute from the tables ({', '.join(differ)} differ)")
    wrong = value_failures(tables, events)   # what S6 never had to doubt: negative counts, unknown tzids, ...
    if wrong:
        raise _tampered(f"the bundle's tables hold values the engine never writes: {', '.join(wrong)}")
    return report
