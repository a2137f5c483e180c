"""S6 split into validate_core / validate_egress / finish: ``validate`` reproduces the report's JSON
bytes and the issue table's parquet bytes of the pre-split implementation (tests/engine/s6_pinned.json,
see s6_pin_cases.py) on a normal run and on tampered inputs that trip every check."""

from __future__ import annotations

import json

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
