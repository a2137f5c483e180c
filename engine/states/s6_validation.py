"""S6: structural validation of S0..S5 (12 checks), issue table, report and receipt.

Every check recomputes what it verifies from the tables themselves; a check failure is not a
run failure (the report says FAIL and S7 refuses to seal). Realism gates are reported in
``observe`` mode (never failing the run) or enforced in ``block`` mode (a hard-gate miss is a
structural failure).

Three steps, so the chain can check the states' core tables before S5 publishes anything:

- ``validate_core``: CHK_S0..CHK_S4 and the state-status consistency of S1..S4, from the core
  tables (the published ones minus the constant lineage columns also do), the events, the S0
  receipt and sealed inputs, the policy digests and the universe Z(c).
- ``validate_egress``: the S5 checks and S5's state-status consistency, from the published S2
  and zone_alloc tables (their digests enter the routing universe hash), S4 and the universe-hash
  document.
- ``finish``: the report and the issue table of both.

``validate`` is the three in a row (the report and issue table are byte-identical to the single
pass this module used to be: tests/engine/test_s6_pinned.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from engine.core.hashing import canonical_json, sha256_hex
from engine.metrics.exact import pandas_group_sum
from engine.metrics import keys
from engine.states.s5_egress import combine, universe_components

CHECKS = {  # check_id -> severity
    "CHK_S0_GATE_SEALED_INPUTS": "ERROR", "CHK_S1_DOMAIN_COUNTS": "ERROR",
    "CHK_S2_PRIORS_ZONE_UNIVERSE": "ERROR", "CHK_S3_DOMAIN_ALIGNMENT": "ERROR", "CHK_S3_SHARE_SUM": "ERROR",
    "CHK_S3_RNG_ACCOUNTING": "ERROR", "CHK_S4_DOMAIN_ALIGNMENT": "ERROR", "CHK_S4_COUNT_CONSERVATION": "ERROR",
    "CHK_S5_ZONE_ALLOC_COUNTS": "ERROR", "CHK_S5_UNIVERSE_HASH_DIGESTS": "ERROR",
    "CHK_S5_UNIVERSE_HASH_COMBINED": "ERROR", "CHK_STATE_STATUS_CONSISTENCY": "WARN",
}
OWNERS = {"S1": ["CHK_S1_DOMAIN_COUNTS"], "S2": ["CHK_S2_PRIORS_ZONE_UNIVERSE"],
          "S3": ["CHK_S3_DOMAIN_ALIGNMENT", "CHK_S3_SHARE_SUM", "CHK_S3_RNG_ACCOUNTING"],
          "S4": ["CHK_S4_DOMAIN_ALIGNMENT", "CHK_S4_COUNT_CONSERVATION"],
          "S5": ["CHK_S5_ZONE_ALLOC_COUNTS", "CHK_S5_UNIVERSE_HASH_DIGESTS", "CHK_S5_UNIVERSE_HASH_COMBINED"]}
PAIR = ["merchant_id", "legal_country_iso"]
TRIPLET = PAIR + ["tzid"]
ISSUE_COLUMNS = ["manifest_fingerprint", "issue_code", "check_id", "severity", "message", "merchant_id",
                 "legal_country_iso", "tzid", "details"]


class Findings:
    """Issue rows (in check order), affected counts per check and the report's row counts."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.counts = {c: 0 for c in CHECKS}
        self.metrics: dict = {}

    def add(self, check: str, code: str, n: int, message: str, **where) -> None:
        if n <= 0:
            return
        self.counts[check] += int(n)
        self.rows.append({"issue_code": code, "check_id": check, "severity": CHECKS[check], "message": message,
                          "merchant_id": where.get("merchant_id"), "legal_country_iso": where.get("country"),
                          "tzid": where.get("tzid"), "details": f"affected={int(n)}"})

    def status_consistency(self, state_status: Mapping, states) -> None:
        for state in states:
            failed = any(self.counts[c] > 0 for c in OWNERS[state])
            if (state_status.get(state) == "PASS") == failed:
                self.add("CHK_STATE_STATUS_CONSISTENCY", "STATE_STATUS_MISMATCH", 1, f"{state} status disagrees")


@dataclass(frozen=True)
class _Coded:
    """The tables' keys as integer codes (one country and one tzid vocabulary for all): merchant ids as uint64,
    strings as ranks in the vocabularies of S1-S3, the events and the universe (S4's against those,
    :func:`keys.codes_in`). A check reads the tables it needs."""
    s1: tuple | None = None
    s2: tuple | None = None
    s3: tuple | None = None
    s4: tuple | None = None
    events: tuple | None = None
    universe: tuple | None = None
    escalated: np.ndarray | None = None


@dataclass(frozen=True)
class Upstream:
    """CHK_S1..CHK_S3 on the S1-S3 tables and the RNG events, and what S4's checks compare against: one per S1-S3
    outcome, shared by every S4 candidate of it (the chain's ``S6.upstream`` state). Read-only."""
    rows: tuple[dict, ...]
    counts: tuple[tuple[str, int], ...]
    countries: np.ndarray   # the sorted vocabularies the codes rank in
    tzids: np.ndarray
    coded: _Coded           # s1, s2 and escalated
    expected: tuple[np.ndarray, np.ndarray, np.ndarray]   # D_esc x Z(c)
    sites: np.ndarray       # S1's site_count as float64, NaN appended (a pair without an S1 row)
    metrics: tuple[tuple[str, int], ...]


def _merchants(frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(frame["merchant_id"].to_numpy(), dtype=np.uint64)


def _check_s0(found: Findings, identity: dict, receipt: dict, sealed: list[dict], policy_digests: dict) -> None:
    chk = "CHK_S0_GATE_SEALED_INPUTS"
    gate = receipt.get("upstream_gates", {})
    found.add(chk, "S0_GATE_STATUS", sum(g.get("status") != "PASS" for g in gate.values()), "upstream gate not PASS")
    found.add(chk, "S0_GATE_MANIFEST_MISMATCH",
              int(receipt.get("manifest_fingerprint") != identity["manifest_fingerprint"]), "receipt fingerprint")
    found.add(chk, "S0_GATE_PARAMETER_MISMATCH",
              int(receipt.get("parameter_hash") != identity["parameter_hash"]), "receipt parameter_hash")
    sealed_pol = {r["logical_id"]: r["sha256_hex"] for r in sealed if r["artefact_kind"] == "policy"}
    found.add(chk, "S0_SEALED_POLICY_MISSING",
              sum(sealed_pol.get(p) != d for p, d in policy_digests.items()), "policy missing or digest differs")


def _check_s1(found: Findings, s1: pd.DataFrame, coded: _Coded) -> None:
    chk = "CHK_S1_DOMAIN_COUNTS"
    found.add(chk, "S1_DUPLICATE_PAIR", keys.duplicates(coded.s1), "duplicate pairs")
    sc = s1["site_count"].to_numpy()
    invalid = (sc < 1) if sc.dtype.kind in "iu" else (s1["site_count"].isna() | (s1["site_count"] < 1)).to_numpy()
    found.add(chk, "S1_SITE_COUNT_INVALID", int(invalid.sum()), "site_count < 1")
    zones = np.bincount(coded.universe[0], minlength=int(coded.s1[1].max(initial=-1)) + 1).astype(np.float64)
    zones[zones == 0] = np.nan  # a country outside the universe has no |Z(c)|: always a mismatch
    per_row = zones[coded.s1[1]] if zones.size else np.zeros(0)
    found.add(chk, "S1_SITE_COUNT_MISMATCH", int((s1["zone_count_country"].to_numpy() != per_row).sum()),
              "zone_count_country != |Z(c)|")


def _alpha_sum_mismatches(s2: pd.DataFrame, country: np.ndarray) -> int:
    """Countries whose alpha_effective sum (as pandas' groupby sum, NaN skipped) differs from the
    first non-null alpha_sum_country by more than 1e-12 relative."""
    gid, n, _ = keys.first_appearance_groups([country])  # the ids of a sort=False groupby
    tot = pandas_group_sum(gid, s2["alpha_effective"].to_numpy(dtype=np.float64), n)
    reported = s2["alpha_sum_country"].to_numpy(dtype=np.float64)
    valid = np.flatnonzero(~np.isnan(reported))
    first = np.full(n, len(reported), dtype=np.int64)
    np.minimum.at(first, gid[valid], valid)
    rep = np.where(first < len(reported), np.append(reported, np.nan)[first], np.nan)
    return int((np.abs(tot - rep) > 1e-12 * np.maximum(1, rep)).sum())


def _check_s2(found: Findings, s2: pd.DataFrame, coded: _Coded) -> None:
    chk = "CHK_S2_PRIORS_ZONE_UNIVERSE"
    found.add(chk, "S2_DUPLICATE_ZONE", keys.duplicates(coded.s2), "duplicate zones")
    inside = np.isin(coded.universe[0], coded.s2[0])
    missing, extra = keys.set_diff([k[inside] for k in coded.universe], coded.s2)
    found.add(chk, "S2_DUPLICATE_ZONE", missing + extra, "priors differ from Z(c)")
    alpha = s2["alpha_effective"].to_numpy(dtype=np.float64)
    found.add(chk, "S2_ALPHA_INVALID", int((~np.isfinite(alpha) | (alpha <= 0)).sum()), "alpha <= 0")
    found.add(chk, "S2_ALPHA_SUM_MISMATCH", _alpha_sum_mismatches(s2, coded.s2[0]), "alpha sum")


def _expected_triplets(coded: _Coded) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """D_esc x Z(c), recomputed from S1 and S2 alone, in (merchant, country, tzid) order."""
    m, c = (k[coded.escalated] for k in coded.s1)
    order = np.lexsort((c, m))
    m, c = m[order], c[order]
    s2c, s2t = coded.s2
    by_zone = np.lexsort((s2t, s2c))
    s2c, s2t = s2c[by_zone], s2t[by_zone]
    uniq, first, counts = np.unique(s2c, return_index=True, return_counts=True)
    pos = np.clip(np.searchsorted(uniq, c), 0, max(len(uniq) - 1, 0))
    known = (uniq[pos] == c) if len(uniq) else np.zeros(len(c), dtype=bool)
    k = np.where(known, counts[pos] if len(uniq) else 0, 0)
    rows = np.arange(int(k.sum()), dtype=np.int64)  # zone j of a pair: its country's first S2 row + j
    rows += np.repeat((first[pos] if len(uniq) else np.zeros(len(c), dtype=np.int64)) - (np.cumsum(k) - k), k)
    return np.repeat(m, k), np.repeat(c, k), s2t[rows]


def _check_zone_table(found: Findings, check: str, prefix: str, table, expected, coded: _Coded) -> None:
    missing, extra = keys.set_diff(expected, table)
    found.add(check, f"{prefix}_MISSING_PAIR", missing, "expected (pair, zone) rows missing")
    found.add(check, f"{prefix}_EXTRA_PAIR", extra, "rows outside D_esc x Z(c)")
    found.add(check, f"{prefix}_DUPLICATE_TRIPLET", keys.duplicates(table), "duplicate triplets")
    if missing or extra:
        zone, s2zone = keys.dense_keys(table[1:], coded.s2)
        found.add(check, f"{prefix}_TZID_OUT_OF_UNIVERSE", int((~np.isin(zone, s2zone)).sum()), "tzid outside Z(c)")


def _check_s3_shares(found: Findings, s3: pd.DataFrame, coded: _Coded) -> None:
    gid, n, _ = keys.first_appearance_groups(coded.s3[:2])  # the ids of a sort=False groupby
    total = pandas_group_sum(gid, s3["share_drawn"].to_numpy(dtype=np.float64), n)
    found.add("CHK_S3_SHARE_SUM", "S3_SHARE_SUM_MISMATCH",
              int((~np.isfinite(total) | (np.abs(total - 1.0) > 1e-12)).sum()), "shares do not sum to 1")


def _check_events(found: Findings, events: pd.DataFrame, trace_totals: dict, coded: _Coded) -> None:
    chk = "CHK_S3_RNG_ACCOUNTING"
    missing, extra = keys.set_diff([k[coded.escalated] for k in coded.s1], coded.events)
    found.add(chk, "S3_RNG_EVENT_MISSING", missing, "escalated pair without event")
    found.add(chk, "S3_RNG_EVENT_EXTRA", extra, "event without escalated pair")
    found.add(chk, "S3_RNG_DUPLICATE_EVENT", keys.duplicates(coded.events), "duplicates")
    col = {k: events[k].to_numpy() for k in ("rng_counter_after", "rng_counter_before", "blocks", "zone_count")}
    draws = events["draws"].to_numpy().astype(np.int64)
    bad_env = (col["rng_counter_after"] - col["rng_counter_before"] != col["blocks"]) | (draws != col["zone_count"])
    found.add(chk, "S3_RNG_TRACE_MISMATCH", int(bad_env.sum()), "event envelope inconsistent")
    tot_ok = (trace_totals.get("events_total") == len(events)
              and trace_totals.get("blocks_total") == int(col["blocks"].sum())
              and trace_totals.get("draws_total") == int(draws.sum()))
    found.add(chk, "S3_RNG_TRACE_MISMATCH", int(not tot_ok), "trace totals != event sums")


def _s1_rows_of(pairs, coded: _Coded) -> np.ndarray:
    """The S1 row of each (merchant, country) pair, or -1 (the first row when S1 repeats a pair)."""
    esc = np.flatnonzero(coded.escalated)
    if keys.same_rows(pairs, [k[esc] for k in coded.s1]) and keys.strictly_increasing(coded.s1):
        return esc
    return keys.find_rows(pairs, coded.s1)


def _check_s4_conservation(found: Findings, s4: pd.DataFrame, sites: np.ndarray, coded: _Coded) -> None:
    gid, n, first = keys.groups(coded.s4[:2])
    counts = s4["zone_site_count"].to_numpy()
    tot = np.bincount(gid, weights=counts.astype(np.float64), minlength=n)
    rep = s4["zone_site_count_sum"].to_numpy()[first]
    n1 = sites[_s1_rows_of([k[first] for k in coded.s4[:2]], coded)]  # -1 (no S1 row) -> NaN: a mismatch
    found.add("CHK_S4_COUNT_CONSERVATION", "S4_COUNT_CONSERVATION", int(((tot != rep) | (rep != n1)).sum()),
              "counts not conserved")


def check_upstream(s1: pd.DataFrame, s2: pd.DataFrame, s3: pd.DataFrame, events: pd.DataFrame, trace_totals: dict,
                   universe: pd.DataFrame) -> Upstream:
    """CHK_S1, CHK_S2 and CHK_S3 (the events with their trace totals): no S4, no policy. Columns read: s1
    merchant_id, legal_country_iso, site_count, zone_count_country, is_escalated; s2 country_iso, tzid,
    alpha_effective, alpha_sum_country; s3 merchant_id, legal_country_iso, tzid, share_drawn."""
    (c1, c2, c3, ce, cu), countries = keys.vocabulary_codes([keys.factorize(col) for col in (
        s1["legal_country_iso"], s2["country_iso"], s3["legal_country_iso"], events["country_iso"],
        universe["country_iso"])])
    (t2, t3, tu), tzids = keys.vocabulary_codes([keys.factorize(col) for col in (s2["tzid"], s3["tzid"],
                                                                                  universe["tzid"])])
    coded = _Coded(s1=(_merchants(s1), c1), s2=(c2, t2), s3=(_merchants(s3), c3, t3), events=(_merchants(events), ce),
                   universe=(cu, tu), escalated=s1["is_escalated"].to_numpy(dtype=bool))
    found = Findings()
    _check_s1(found, s1, coded)
    _check_s2(found, s2, coded)
    expected = _expected_triplets(coded)
    _check_zone_table(found, "CHK_S3_DOMAIN_ALIGNMENT", "S3", coded.s3, expected, coded)
    _check_s3_shares(found, s3, coded)
    _check_events(found, events, trace_totals, coded)
    sites = np.append(s1["site_count"].to_numpy(dtype=np.float64), np.nan)
    for a in (*expected, *coded.s1, *coded.s2, coded.escalated, sites, countries, tzids):   # kept for every S4
        a.flags.writeable = False
    return Upstream(rows=tuple(found.rows), counts=tuple(found.counts.items()), countries=countries, tzids=tzids,
                    coded=_Coded(s1=coded.s1, s2=coded.s2, escalated=coded.escalated), expected=expected, sites=sites,
                    metrics=(("pairs_total", len(s1)), ("pairs_escalated", int(coded.escalated.sum())),
                             ("s3_rows", len(s3)), ("rng_event_rows", len(events))))


def validate_s4(identity: dict, receipt: dict, sealed: list[dict], upstream: Upstream, s4: pd.DataFrame,
                policy_digests: dict, state_status: Mapping) -> Findings:
    """CHK_S0, the upstream checks' findings, CHK_S4 and the S1..S4 state-status consistency, in check order. ``s4``
    core or published (merchant_id, legal_country_iso, tzid, zone_site_count, zone_site_count_sum)."""
    found = Findings()
    _check_s0(found, identity, receipt, sealed, policy_digests)
    found.rows += [dict(row) for row in upstream.rows]
    for check, n in upstream.counts:
        found.counts[check] += n
    up = upstream.coded
    coded = _Coded(s1=up.s1, s2=up.s2, escalated=up.escalated, s4=(
        _merchants(s4), keys.codes_in(upstream.countries, s4["legal_country_iso"]),
        keys.codes_in(upstream.tzids, s4["tzid"])))
    _check_zone_table(found, "CHK_S4_DOMAIN_ALIGNMENT", "S4", coded.s4, upstream.expected, coded)
    _check_s4_conservation(found, s4, upstream.sites, coded)
    found.status_consistency(state_status, ("S1", "S2", "S3", "S4"))
    m = dict(upstream.metrics)
    found.metrics = {"pairs_total": m["pairs_total"], "pairs_escalated": m["pairs_escalated"],
                     "s3_rows": m["s3_rows"], "s4_rows": len(s4), "rng_event_rows": m["rng_event_rows"]}
    return found


def validate_core(identity: dict, receipt: dict, sealed: list[dict], tables: Mapping[str, pd.DataFrame],
                  events: pd.DataFrame, trace_totals: dict, policy_digests: dict, state_status: Mapping,
                  universe: pd.DataFrame) -> Findings:
    """CHK_S0..CHK_S4 and the S1..S4 state-status consistency: :func:`check_upstream` then :func:`validate_s4`.
    ``tables``: "s1", "s2", "s3", "s4", core or published."""
    upstream = check_upstream(tables["s1"], tables["s2"], tables["s3"], events, trace_totals, universe)
    return validate_s4(identity, receipt, sealed, upstream, tables["s4"], policy_digests, state_status)


def _not_equal_count(values: pd.Series, expected: str) -> int:
    arr = pa.Array.from_pandas(values)
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return int(pc.sum(pc.fill_null(pc.not_equal(arr, pa.scalar(expected, arr.type)), True)).as_py() or 0)
    return int((values != expected).sum())


def validate_egress(s2: pd.DataFrame, s4: pd.DataFrame, zone_alloc: pd.DataFrame, universe_doc: dict,
                    policy_digests: dict, state_status: Mapping, zone_alloc_digest: str | None = None) -> Findings:
    """The S5 checks and S5's state-status consistency. ``s2`` and ``zone_alloc`` are the published
    tables (their digests are recomputed); ``s4`` core or published (merchant_id, legal_country_iso,
    tzid, zone_site_count)."""
    found, za, chk = Findings(), zone_alloc, "CHK_S5_ZONE_ALLOC_COUNTS"
    c4, cz = keys.string_codes([s4["legal_country_iso"], za["legal_country_iso"]])
    t4, tz = keys.string_codes([s4["tzid"], za["tzid"]])
    m4, mz = _merchants(s4), _merchants(za)
    missing, extra = keys.set_diff((m4, c4, t4), (mz, cz, tz))
    found.add(chk, "S5_ALLOC_MISSING_TRIPLET", missing, "zone_alloc misses S4 rows")
    found.add(chk, "S5_ALLOC_EXTRA_TRIPLET", extra, "zone_alloc rows not in S4")
    if not missing and not extra and len(za) == len(s4):
        found.add(chk, "S5_ALLOC_COUNT_MISMATCH",
                  int((za["zone_site_count"].to_numpy() != s4["zone_site_count"].to_numpy()).sum()), "counts != S4")
        found.add(chk, "S5_ALLOC_SUM_MISMATCH",
                  int((za["site_count"].to_numpy() != za["zone_site_count_sum"].to_numpy()).sum()), "totals != S1")
    parts = universe_components(s2, za, policy_digests, zone_alloc_digest)
    found.add("CHK_S5_UNIVERSE_HASH_DIGESTS", "S5_DIGEST_MISMATCH",
              sum(universe_doc.get(k) != v for k, v in parts.items()), "component digest does not recompute")
    routing = combine(parts)
    found.add("CHK_S5_UNIVERSE_HASH_COMBINED", "S5_ROUTING_HASH_MISMATCH",
              int(universe_doc.get("routing_universe_hash") != routing), "universe hash does not recompute")
    found.add("CHK_S5_UNIVERSE_HASH_COMBINED", "S5_ALLOC_ROUTING_HASH_MISMATCH",
              _not_equal_count(za["routing_universe_hash"], routing), "row hash differs")
    found.status_consistency(state_status, ("S5",))
    found.metrics = {"zone_alloc_rows": len(za)}
    return found


def finish(identity: dict, core: Findings, egress: Findings) -> tuple[dict, pd.DataFrame]:
    """-> (validation report, issue table) of both steps (core's issues first)."""
    counts = {c: core.counts[c] + egress.counts[c] for c in CHECKS}
    rows = core.rows + egress.rows
    checks = []
    for cid in sorted(CHECKS):
        n = counts[cid]
        status = "PASS" if n == 0 else ("FAIL" if CHECKS[cid] == "ERROR" else "WARN")
        checks.append({"check_id": cid, "status": status, "severity": CHECKS[cid], "affected_count": n})
    statuses = [c["status"] for c in checks]
    m = {**core.metrics, **egress.metrics, "issues_total": len(rows)}
    report = {
        "manifest_fingerprint": identity["manifest_fingerprint"], "parameter_hash": identity["parameter_hash"],
        "overall_status": "FAIL" if "FAIL" in statuses else "PASS",
        "checks_passed_count": statuses.count("PASS"), "checks_failed_count": statuses.count("FAIL"),
        "checks_warn_count": statuses.count("WARN"), "checks": checks,
        "metrics": {k: m[k] for k in ("pairs_total", "pairs_escalated", "s3_rows", "s4_rows", "zone_alloc_rows",
                                      "rng_event_rows", "issues_total")},
    }
    table = pd.DataFrame(rows, columns=ISSUE_COLUMNS[1:])
    table.insert(0, "manifest_fingerprint", identity["manifest_fingerprint"])
    table = table.sort_values(["severity", "issue_code", "check_id"], kind="mergesort").reset_index(drop=True)
    return report, table[ISSUE_COLUMNS].astype(object)


def validate(identity: dict, receipt: dict, sealed: list[dict], tables: dict, events: pd.DataFrame,
             trace_totals: dict, universe_doc: dict, policy_digests: dict, state_status: dict,
             universe: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """-> (validation report, issue table): validate_core, validate_egress, finish."""
    core = validate_core(identity, receipt, sealed, tables, events, trace_totals, policy_digests, state_status,
                         universe)
    egress = validate_egress(tables["s2"], tables["s4"], tables["zone_alloc"], universe_doc, policy_digests,
                             state_status)
    return finish(identity, core, egress)


def receipt(report: dict, report_digest: str, issues_digest: str) -> dict:
    """s6_receipt_3A: status map and the digests of the report and issue files (no timestamp)."""
    return {"manifest_fingerprint": report["manifest_fingerprint"], "parameter_hash": report["parameter_hash"],
            "s6_version": "1.0.0", "overall_status": report["overall_status"],
            "checks_passed_count": report["checks_passed_count"], "checks_failed_count": report["checks_failed_count"],
            "checks_warn_count": report["checks_warn_count"],
            "check_status_map": {c["check_id"]: {"status": c["status"], "severity": c["severity"]}
                                 for c in report["checks"]},
            "validation_report_digest": report_digest, "issue_table_digest": issues_digest}


def report_digest(report: dict) -> str:
    return sha256_hex(canonical_json(report))
