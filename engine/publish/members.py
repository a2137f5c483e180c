"""Bundle members of a run (exact bytes), RNG evidence logs, and the S6 realism hook."""

from __future__ import annotations

import numpy as np
import pandas as pd

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


def _q(text: str) -> str:
    if '"' in text or "\\" in text or not text.isascii():
        raise ValueError(f"identifier needs JSON escaping: {text!r}")
    return f'"{text}"'


def rng_logs(identity: dict, events: pd.DataFrame) -> tuple[bytes, bytes, bytes]:
    """Event lines (one per escalated pair), cumulative trace lines, and the audit line: canonical JSON
    (sorted keys, compact, shortest float repr) written from a template; no timestamps."""
    mf, ph, rid, seed = (_q(identity["manifest_fingerprint"]), _q(identity["parameter_hash"]),
                         _q(identity["run_id"]), int(identity["seed"]))
    blocks_cum = np.cumsum(events["blocks"].to_numpy(dtype=np.int64)).tolist()
    draws_cum = np.cumsum(events["draws"].to_numpy(dtype=np.int64)).tolist()
    cols = [events[c].tolist() for c in ("merchant_id", "country_iso", "rng_stream_id", "zone_count",
                                          "rng_counter_before", "rng_counter_after", "blocks", "draws",
                                          "alpha_sum_country", "alpha_min", "alpha_max")]
    ev, tr = [], []
    for i, (m, c, sid, k, before, after, blocks, draws, a_sum, a_min, a_max) in enumerate(zip(*cols)):
        ev.append(f'{{"alpha_max":{float(a_max)!r},"alpha_min":{float(a_min)!r},"alpha_sum_country":{float(a_sum)!r},'
                  f'"blocks":{int(blocks)},"country_iso":{_q(c)},"draws":"{int(draws)}","manifest_fingerprint":{mf},'
                  f'"merchant_id":{int(m)},"module":"3A.S3","parameter_hash":{ph},"rng_counter_after_hi":0,'
                  f'"rng_counter_after_lo":{int(after)},"rng_counter_before_hi":0,"rng_counter_before_lo":{int(before)},'
                  f'"rng_stream_id":{_q(sid)},"run_id":{rid},"seed":{seed},"substream_label":"zone_dirichlet",'
                  f'"zone_count":{int(k)}}}\n')
        tr.append(f'{{"blocks_total":{blocks_cum[i]},"draws_total":"{draws_cum[i]}","events_total":{i + 1},'
                  f'"module":"3A.S3","run_id":{rid},"seed":{seed},"substream_label":"zone_dirichlet"}}\n')
    audit = jsonl_bytes([{"run_id": identity["run_id"], "seed": seed, "parameter_hash": identity["parameter_hash"],
                          "manifest_fingerprint": identity["manifest_fingerprint"], "algorithm": "philox4x32-10",
                          "engine_version": identity["engine_version"], "uniform": "53-bit (k+0.5)/2^53",
                          "gamma": "inverse-CDF, log space"}])
    return _ascii(ev), _ascii(tr), audit


def _ascii(lines: list[str]) -> bytes:
    """The lines as one ASCII bytes object; the list is emptied first, so at most two copies coexist."""
    text = "".join(lines)
    lines.clear()
    return text.encode("ascii")


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
