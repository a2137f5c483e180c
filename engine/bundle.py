"""S5 -> S7 as one pure step over a scored run: lineage, egress, the S6 report and the S7 seal.

This is the half of the chain that produces bytes. :class:`engine.result.ChainResult` calls it the first
time a published attribute is read (``tables``, ``s6_report``, ``members``, ``flag`` ...), and
:func:`engine.store.materialise` writes what it returns. Its seconds are booked to S5, S6 and S7.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd

from engine.hashing import sha256_hex
from engine.chain_steps import STATE_STATUS
from engine.members import build_members
from engine.serialize import json_bytes
from engine.states import s5_egress, s6_validation
from engine.states.lineage import lineage_values, with_lineage
from engine.states.s7_bundle import index_document, passed_flag


@dataclass
class Bundle:
    """S5 -> S7 of a run: the published tables, the S6 report and the S7 seal (exact bytes in members)."""

    tables: dict
    universe_doc: dict
    s6_report: dict
    s6_issues: pd.DataFrame
    s6_receipt: dict
    members: list
    index: dict
    flag: str
    s7: dict


S7_REFUSED = {"status": "FAIL", "error_code": "E3A_S7_001_S6_NOT_PASS"}


def published_tables(result, lin: dict) -> dict:
    cores, extra = result.cores, result.publish_inputs.s4_extra
    return {
        "s1": with_lineage(cores["s1"], "s1", lin),
        "s2": with_lineage(cores["s2"], "s2", lin),
        "s3": with_lineage(cores["s3"], "s3", lin),
        "s4": with_lineage(cores["s4"], "s4", lin, extra=extra),
    }


def _s5(result) -> tuple[dict, dict]:
    inputs = result.publish_inputs
    lin = lineage_values(result.identity, inputs.policies)
    tables = published_tables(result, lin)
    tables["zone_alloc"], universe_doc = s5_egress.egress(tables["s1"], tables["s2"], tables["s4"], lin,
                                                          inputs.policies.digests)
    return tables, universe_doc


def _s6(result, tables: dict, universe_doc: dict):
    """S6's report: the S0-S4 findings made while scoring, and S5's checks on the bytes just built."""
    inputs = result.publish_inputs
    egress = s6_validation.validate_egress(tables["s2"], result.cores["s4"], tables["zone_alloc"], universe_doc,
                                           inputs.policies.digests, STATE_STATUS)
    report, issues = s6_validation.finish(result.identity, inputs.s6_core, egress)
    report["realism"] = inputs.realism
    if inputs.realism_blocks:
        report["overall_status"] = "FAIL"
    return report, issues


def _s7(result, tables: dict, universe_doc: dict, report: dict, issues):
    members, receipt6 = build_members(result.identity, result.receipt, result.sealed, tables, result.events,
                                      universe_doc, report, issues)
    if report["overall_status"] != "PASS":
        return members, receipt6, {}, "", dict(S7_REFUSED)
    index = index_document(result.identity, members, sha256_hex(json_bytes(receipt6)))
    flag = passed_flag(index)
    return members, receipt6, index, flag, {"status": "PASS", "error_code": None,
                                            "bundle_sha256_hex": flag.split(" = ")[1].strip(),
                                            "member_count": len(index["members"])}


def build_bundle(result) -> Bundle:
    """-> the run's Bundle; books the seconds of S5, S6 and S7 in ``result.seconds``."""
    clock = time.perf_counter()
    tables, universe_doc = _s5(result)
    t5 = time.perf_counter()
    report, issues = _s6(result, tables, universe_doc)
    t6 = time.perf_counter()
    members, receipt6, index, flag, s7 = _s7(result, tables, universe_doc, report, issues)
    t7 = time.perf_counter()
    for state, seconds in (("S5", t5 - clock), ("S6", t6 - t5), ("S7", t7 - t6)):
        result.seconds[state] = result.seconds.get(state, 0.0) + seconds
    return Bundle(tables=tables, universe_doc=universe_doc, s6_report=report, s6_issues=issues,
                  s6_receipt=receipt6, members=members, index=index, flag=flag, s7=s7)
