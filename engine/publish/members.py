"""Bundle members of a run (exact bytes), RNG evidence logs, and the S6 realism hook."""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.publish.jsonl_text import float_text, id_text, int_text, lines, literal, quoted
from engine.publish.serialize import json_bytes, jsonl_bytes, parquet_bytes
from engine.states import s6_validation
from engine.states.s7_bundle import Member
from engine.core.hashing import sha256_hex

SCHEMA = "engine/states/lineage.py#COLUMNS"


def data_paths(identity: dict) -> dict[str, str]:
    mf, seed, ph, rid = (identity["manifest_fingerprint"], identity["seed"], identity["parameter_hash"],
                         identity["run_id"])
    sm = f"seed={seed}/manifest_fingerprint={mf}"
    rng = f"seed={seed}/parameter_hash={ph}/run_id={rid}"
    return {
        "s0_gate_receipt_3A": f"data/s0_gate_receipt/manifest_fingerprint={mf}/s0_gate_receipt_3A.json",
        "sealed_inputs_3A": f"data/sealed_inputs/manifest_fingerprint={mf}/sealed_inputs_3A.json",
        "s1_escalation_queue": f"data/s1_escalation_queue/{sm}/part-00000.parquet",
        "s2_country_zone_priors": f"data/s2_country_zone_priors/parameter_hash={ph}/part-00000.parquet",
        "s3_zone_shares": f"data/s3_zone_shares/{sm}/part-00000.parquet",
        "s4_zone_counts": f"data/s4_zone_counts/{sm}/part-00000.parquet",
        "zone_alloc": f"data/zone_alloc/{sm}/part-00000.parquet",
        "zone_alloc_universe_hash": f"data/zone_universe/{sm}/zone_alloc_universe_hash.json",
        "rng_event_zone_dirichlet": f"logs/rng/events/zone_dirichlet/{rng}/part-00000.jsonl",
        "rng_trace_log": f"logs/rng/trace/{rng}/rng_trace_log.jsonl",
        "rng_audit_log": f"logs/rng/audit/{rng}/rng_audit_log.jsonl",
        "s6_validation_report_3A": f"data/s6_validation_report/manifest_fingerprint={mf}/report.json",
        "s6_issue_table_3A": f"data/s6_issues/manifest_fingerprint={mf}/issues.parquet",
        "s6_receipt_3A": f"data/s6_receipt/manifest_fingerprint={mf}/s6_receipt.json",
        "index": f"data/validation/manifest_fingerprint={mf}/index.json",
        "flag": f"data/validation/manifest_fingerprint={mf}/_passed.flag",
    }


TABLE_MEMBERS = {"s1": "s1_escalation_queue", "s2": "s2_country_zone_priors", "s3": "s3_zone_shares",
                 "s4": "s4_zone_counts", "zone_alloc": "zone_alloc"}
ROLES = {"s0_gate_receipt_3A": "gate", "sealed_inputs_3A": "sealed_inputs", "s1_escalation_queue": "escalation",
         "s2_country_zone_priors": "priors", "s3_zone_shares": "shares", "s4_zone_counts": "counts",
         "zone_alloc": "egress", "zone_alloc_universe_hash": "universe_hash", "rng_event_zone_dirichlet": "rng_event",
         "rng_trace_log": "rng_trace", "rng_audit_log": "rng_audit", "s6_validation_report_3A": "validation_report",
         "s6_issue_table_3A": "validation_issues", "s6_receipt_3A": "validation_receipt"}


def trace_totals(events: pd.DataFrame) -> dict:
    return {"events_total": len(events), "blocks_total": int(events["blocks"].sum()),
            "draws_total": int(events["draws"].sum())}


def rng_logs(identity: dict, events: pd.DataFrame) -> tuple[bytes, bytes, bytes]:
    """Event lines (one per escalated pair), cumulative trace lines, and the audit line: canonical JSON
    (sorted keys, compact, shortest float repr) written from a template a column at a time
    (:mod:`engine.publish.jsonl_text`); no timestamps."""
    mf, ph, rid = (quoted(identity[k]) for k in ("manifest_fingerprint", "parameter_hash", "run_id"))
    seed, n = int(identity["seed"]), len(events)
    col = lambda name: events[name].to_numpy()  # noqa: E731
    ev = lines([literal('{"alpha_max":'), float_text(col("alpha_max")), literal(',"alpha_min":'),
                float_text(col("alpha_min")), literal(',"alpha_sum_country":'), float_text(col("alpha_sum_country")),
                literal(',"blocks":'), int_text(col("blocks")), literal(',"country_iso":'),
                id_text(events["country_iso"]), literal(',"draws":"'), int_text(col("draws")),
                literal(f'","manifest_fingerprint":{mf},"merchant_id":'), int_text(col("merchant_id")),
                literal(f',"module":"3A.S3","parameter_hash":{ph},"rng_counter_after_hi":0,"rng_counter_after_lo":'),
                int_text(col("rng_counter_after")), literal(',"rng_counter_before_hi":0,"rng_counter_before_lo":'),
                int_text(col("rng_counter_before")), literal(',"rng_stream_id":'), id_text(events["rng_stream_id"]),
                literal(f',"run_id":{rid},"seed":{seed},"substream_label":"zone_dirichlet","zone_count":'),
                int_text(col("zone_count")), literal("}\n")], n)
    tr = lines([literal('{"blocks_total":'), int_text(np.cumsum(events["blocks"].to_numpy(dtype=np.int64))),
                literal(',"draws_total":"'), int_text(np.cumsum(events["draws"].to_numpy(dtype=np.int64))),
                literal('","events_total":'), int_text(np.arange(1, n + 1, dtype=np.int64)),
                literal(f',"module":"3A.S3","run_id":{rid},"seed":{seed},"substream_label":"zone_dirichlet"}}\n')], n)
    audit = jsonl_bytes([{"run_id": identity["run_id"], "seed": seed, "parameter_hash": identity["parameter_hash"],
                          "manifest_fingerprint": identity["manifest_fingerprint"], "algorithm": "philox4x32-10",
                          "engine_version": identity["engine_version"], "uniform": "53-bit (k+0.5)/2^53",
                          "gamma": "inverse-CDF, log space"}])
    return ev, tr, audit


def build_members(identity: dict, receipt: dict, sealed: list, table_bytes: dict, logs: tuple[bytes, bytes, bytes],
                  universe_doc: dict, s6_report: dict, s6_issues: pd.DataFrame) -> tuple[list[Member], dict]:
    """Every member's exact bytes; ``table_bytes`` maps "s1".."s4", "zone_alloc" to their parquet bytes and
    ``logs`` are :func:`rng_logs` of the run's events."""
    paths = data_paths(identity)
    data: dict[str, bytes] = {
        "s0_gate_receipt_3A": json_bytes(receipt),
        "sealed_inputs_3A": json_bytes(sealed),
        "zone_alloc_universe_hash": json_bytes(universe_doc),
        "s6_validation_report_3A": json_bytes(s6_report),
        "s6_issue_table_3A": parquet_bytes(s6_issues),
    }
    for key, logical in TABLE_MEMBERS.items():
        data[logical] = table_bytes[key]
    data["rng_event_zone_dirichlet"], data["rng_trace_log"], data["rng_audit_log"] = logs
    receipt6 = s6_validation.receipt(s6_report, sha256_hex(data["s6_validation_report_3A"]),
                                     sha256_hex(data["s6_issue_table_3A"]))
    data["s6_receipt_3A"] = json_bytes(receipt6)
    members = [Member(lid, paths[lid], ROLES[lid], SCHEMA, blob) for lid, blob in sorted(data.items())]
    return members, receipt6
