"""S6 split into validate_core / validate_egress / finish: ``validate`` reproduces the report's JSON
bytes and the issue table's parquet bytes of the pre-split implementation (tests/engine/s6_pinned.json,
see s6_pin_cases.py) on a normal run and on tampered inputs that trip every check."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from engine.states import s6_validation
from tests.engine.s6_pin_cases import ARGS, FIXTURE, case_inputs, outputs

PINNED = json.loads(FIXTURE.read_text())
REPORTED = sorted(k for k, v in PINNED.items() if "raises" not in v)


def test_fixture_trips_every_check():
    tripped = set()
    for name in REPORTED:
        for c in json.loads(PINNED[name]["report_json"])["checks"]:
            if c["affected_count"]:
                tripped.add(c["check_id"])
    assert tripped == set(s6_validation.CHECKS)


@pytest.mark.parametrize("name", REPORTED)
def test_validate_matches_pre_split_bytes(name):
    a = case_inputs(name)
    got = outputs(*s6_validation.validate(*(a[k] for k in ARGS)))
    want = PINNED[name]
    assert got["report_json"] == want["report_json"]
    assert got["issues_rows"] == want["issues_rows"]
    assert got["issues_parquet_sha256"] == want["issues_parquet_sha256"]


RAISED = sorted(k for k, v in PINNED.items() if "raises" in v)


@pytest.mark.parametrize("name", RAISED)
def test_duplicate_s1_pairs_are_reported_not_raised(name):
    """The pre-split validate raised ValueError (a non-unique index) when S1 repeated a pair; the
    split one reports it as S1_DUPLICATE_PAIR and carries on."""
    assert "s1_duplicate" in name and PINNED[name]["raises"].startswith("ValueError")
    a = case_inputs(name)
    report, issues = s6_validation.validate(*(a[k] for k in ARGS))
    counts = {c["check_id"]: c["affected_count"] for c in report["checks"]}
    assert counts["CHK_S1_DOMAIN_COUNTS"] >= 1 and report["overall_status"] == "FAIL"
    assert "S1_DUPLICATE_PAIR" in set(issues["issue_code"])
    if "+" not in name:  # the repeated pair's first S1 row is the reference: S4 still conserves
        assert counts == {**{c: 0 for c in s6_validation.CHECKS}, "CHK_S1_DOMAIN_COUNTS": 1,
                          "CHK_STATE_STATUS_CONSISTENCY": 1}


CORE_ARGS = ("identity", "receipt", "sealed", "tables", "events", "trace_totals", "policy_digests", "state_status",
             "universe")


def _core_tables(tables: dict, object_strings: bool) -> dict:
    """The published tables minus the constant lineage columns (what the states compute)."""
    from tests.metrics.test_pack_pinned import core_tables

    return core_tables(tables, object_strings, zone_alloc=False)


@pytest.mark.parametrize("object_strings", [False, True])
@pytest.mark.parametrize("name", ["normal", "s1_zone_count", "s2_missing", "s3_stray_zone", "s3_event_extra",
                                  "s4_extra_pair", "s3_shuffled+s4_count", "s2_alpha_nan+s4_duplicate"])
def test_core_on_core_tables_equals_core_on_published_tables(name, object_strings):
    a = case_inputs(name)
    published = s6_validation.validate_core(*(a[k] for k in CORE_ARGS))
    a["tables"] = _core_tables(a["tables"], object_strings)
    assert "seed" not in a["tables"]["s3"].columns and "notes" not in a["tables"]["s1"].columns
    core = s6_validation.validate_core(*(a[k] for k in CORE_ARGS))
    assert (core.rows, core.counts, core.metrics) == (published.rows, published.counts, published.metrics)


@pytest.mark.parametrize("name", ["normal", "s4_count", "s5_row_hash+status_s5_fail",
                                  "s1_zone_count+s2_missing+status_s5_fail", "s2_alpha_nan+s4_duplicate+status_s3_fail"])
def test_steps_own_their_checks_and_finish_composes_them(name):
    a = case_inputs(name)
    core = s6_validation.validate_core(*(a[k] for k in CORE_ARGS))
    egress = s6_validation.validate_egress(a["tables"]["s2"], a["tables"]["s4"], a["tables"]["zone_alloc"],
                                           a["universe_doc"], a["policy_digests"], a["state_status"])
    assert all(r["check_id"][:6] in ("CHK_S0", "CHK_S1", "CHK_S2", "CHK_S3", "CHK_S4", "CHK_ST") for r in core.rows)
    assert all(r["check_id"][:6] in ("CHK_S5", "CHK_ST") for r in egress.rows)
    assert all(r["message"] == "S5 status disagrees" for r in egress.rows if r["check_id"] == "CHK_STATE_STATUS_CONSISTENCY")
    assert set(core.metrics) | set(egress.metrics) == {"pairs_total", "pairs_escalated", "s3_rows", "s4_rows",
                                                       "zone_alloc_rows", "rng_event_rows"}
    got = outputs(*s6_validation.finish(a["identity"], core, egress))
    assert got["report_json"] == PINNED[name]["report_json"]
    assert got["issues_parquet_sha256"] == PINNED[name]["issues_parquet_sha256"]


def _upstream_then_s4(a: dict, s4):
    up = s6_validation.check_upstream(*(a["tables"][k] for k in ("s1", "s2", "s3")), a["events"], a["trace_totals"],
                                      a["universe"])
    return up, s6_validation.validate_s4(a["identity"], a["receipt"], a["sealed"], up, s4, a["policy_digests"],
                                         a["state_status"])


@pytest.mark.parametrize("name", ["normal", "s4_missing", "s4_stray_zone", "s4_count", "s4_shuffled",
                                  "s3_stray_zone+s4_extra_pair", "s1_zone_count+s4_reported"])
def test_one_upstream_serves_every_s4_table_of_its_s1_to_s3(name):
    """The chain keeps S6.upstream while S1-S3 are unchanged: checking a tampered S4 against the upstream of the
    untampered S1-S3 gives validate_core's findings, and leaves that upstream as it was (its arrays are read-only)."""
    normal, a = case_inputs(name.split("+")[0] if name.startswith("s1") else "normal"), case_inputs(name)
    if name.startswith("s3"):
        normal = a
    up, _ = _upstream_then_s4(normal, normal["tables"]["s4"])
    kept = (up.rows, up.counts, [x.copy() for x in up.expected])
    found = s6_validation.validate_s4(a["identity"], a["receipt"], a["sealed"], up, a["tables"]["s4"],
                                      a["policy_digests"], a["state_status"])
    whole = s6_validation.validate_core(*(a[k] for k in CORE_ARGS))
    assert (found.rows, found.counts, found.metrics) == (whole.rows, whole.counts, whole.metrics)
    assert (up.rows, up.counts) == kept[:2] and all(np.array_equal(x, y) for x, y in zip(up.expected, kept[2]))
    assert not any(x.flags.writeable for x in (*up.expected, *up.coded.s1, *up.coded.s2, up.coded.escalated, up.sites,
                                               up.countries, up.tzids))


def test_an_s4_row_outside_every_upstream_vocabulary_is_found():
    """A country and a tzid no upstream table has: codes after the vocabulary's, never equal to one of its codes."""
    a = case_inputs("normal")
    s4 = a["tables"]["s4"]
    row = s4.iloc[[0]].copy()
    row["legal_country_iso"], row["tzid"] = "ZZ", "Nowhere/Zone"
    s4 = pd.concat([s4, row.astype(s4.dtypes.to_dict())], ignore_index=True)
    _, found = _upstream_then_s4(a, s4)
    assert {c: n for c, n in found.counts.items() if n} == {"CHK_S4_DOMAIN_ALIGNMENT": 2,
                                                           "CHK_S4_COUNT_CONSERVATION": 1,
                                                           "CHK_STATE_STATUS_CONSISTENCY": 1}
    assert "S4_TZID_OUT_OF_UNIVERSE" in {r["issue_code"] for r in found.rows}
