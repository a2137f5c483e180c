"""S6: structural validation of S0..S5 (12 checks), issue table, report and receipt.

Every check recomputes what it verifies from the tables themselves; a check failure is not a
run failure (the report says FAIL and S7 refuses to seal). Realism gates are reported in
``observe`` mode (never failing the run) or enforced in ``block`` mode (a hard-gate miss is a
structural failure).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from engine.hashing import canonical_json, sha256_hex
from engine.states.s5_egress import combine, universe_components

CHECKS = {  # check_id -> severity
    "CHK_S0_GATE_SEALED_INPUTS": "ERROR", "CHK_S1_DOMAIN_COUNTS": "ERROR",
    "CHK_S2_PRIORS_ZONE_UNIVERSE": "ERROR", "CHK_S3_DOMAIN_ALIGNMENT": "ERROR", "CHK_S3_SHARE_SUM": "ERROR",
    "CHK_S3_RNG_ACCOUNTING": "ERROR", "CHK_S4_DOMAIN_ALIGNMENT": "ERROR", "CHK_S4_COUNT_CONSERVATION": "ERROR",
    "CHK_S5_ZONE_ALLOC_COUNTS": "ERROR", "CHK_S5_UNIVERSE_HASH_DIGESTS": "ERROR",
    "CHK_S5_UNIVERSE_HASH_COMBINED": "ERROR", "CHK_STATE_STATUS_CONSISTENCY": "WARN",
}
PAIR = ["merchant_id", "legal_country_iso"]
TRIPLET = PAIR + ["tzid"]


class _Issues:
    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.counts = {c: 0 for c in CHECKS}

    def add(self, check: str, code: str, n: int, message: str, **where) -> None:
        if n <= 0:
            return
        self.counts[check] += int(n)
        self.rows.append({"issue_code": code, "check_id": check, "severity": CHECKS[check], "message": message,
                          "merchant_id": where.get("merchant_id"), "legal_country_iso": where.get("country"),
                          "tzid": where.get("tzid"), "details": f"affected={int(n)}"})


def _column(frame: pd.DataFrame, col: str):
    s = frame[col]
    return s.to_numpy() if s.dtype.kind in "iubf" else pa.Array.from_pandas(s).cast(pa.string())


def _cmp(op: str, a, b) -> np.ndarray:
    if isinstance(a, np.ndarray):
        return {"gt": np.greater, "eq": np.equal}[op](a, b)
    return getattr(pc, {"gt": "greater", "eq": "equal"}[op])(a, b).to_numpy(zero_copy_only=False)


def _same_rows(a: pd.DataFrame, b: pd.DataFrame, cols: list[str]) -> bool:
    if len(a) != len(b):
        return False
    for c in cols:
        x, y = _column(a, c), _column(b, c)
        if type(x) is not type(y) or not bool(np.all(_cmp("eq", x, y))):
            return False
    return True


def _strictly_increasing(frame: pd.DataFrame, cols: list[str]) -> bool:
    """True when rows are in strictly increasing lexicographic key order (hence no duplicates)."""
    if len(frame) < 2:
        return True
    later = np.zeros(len(frame) - 1, dtype=bool)
    tied = np.ones(len(frame) - 1, dtype=bool)
    for c in cols:
        v = _column(frame, c)
        later |= tied & _cmp("gt", v[1:], v[:-1])
        tied &= _cmp("eq", v[1:], v[:-1])
    return bool(later.all())


def _duplicates(frame: pd.DataFrame, cols: list[str]) -> int:
    return 0 if _strictly_increasing(frame, cols) else int(frame.duplicated(cols).sum())


def _set_diff(a: pd.DataFrame, b: pd.DataFrame, cols: list[str]) -> tuple[int, int]:
    """(missing from b, extra in b); exact, with a fast path when both hold the same sorted keys."""
    if _same_rows(a, b, cols) and _strictly_increasing(a, cols):
        return 0, 0
    m = a[cols].drop_duplicates().merge(b[cols].drop_duplicates(), on=cols, how="outer", indicator=True)
    return int((m["_merge"] == "right_only").sum()), int((m["_merge"] == "left_only").sum())


def _expected_triplets(s1: pd.DataFrame, s2: pd.DataFrame) -> pd.DataFrame:
    """D_esc x Z(c), recomputed from S1 and S2 alone, in (merchant, country, tzid) order."""
    esc = s1.loc[s1["is_escalated"].to_numpy(dtype=bool), PAIR].sort_values(PAIR, kind="mergesort")
    s2k = s2[["country_iso", "tzid"]].sort_values(["country_iso", "tzid"], kind="mergesort")
    countries = s2k["country_iso"].to_numpy(dtype=object)
    uniq, first, counts = np.unique(countries, return_index=True, return_counts=True)
    cc = esc["legal_country_iso"].to_numpy(dtype=object)
    pos = np.clip(np.searchsorted(uniq, cc), 0, max(len(uniq) - 1, 0))
    known = (uniq[pos] == cc) if len(uniq) else np.zeros(len(cc), dtype=bool)
    k = np.where(known, counts[pos], 0)
    rows = np.repeat(first[pos], k) + (np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k))
    return pd.DataFrame({"merchant_id": np.repeat(esc["merchant_id"].to_numpy(), k),
                         "legal_country_iso": np.repeat(cc, k),
                         "tzid": s2k["tzid"].to_numpy(dtype=object)[rows]})


def _check_zone_table(issues: _Issues, check: str, prefix: str, table: pd.DataFrame, expected: pd.DataFrame,
                      s2: pd.DataFrame) -> None:
    missing, extra = _set_diff(expected, table, TRIPLET)
    issues.add(check, f"{prefix}_MISSING_PAIR", missing, "expected (pair, zone) rows missing")
    issues.add(check, f"{prefix}_EXTRA_PAIR", extra, "rows outside D_esc x Z(c)")
    issues.add(check, f"{prefix}_DUPLICATE_TRIPLET", _duplicates(table, TRIPLET), "duplicate triplets")
    if missing or extra:
        stray = ~table.set_index(["legal_country_iso", "tzid"]).index.isin(s2.set_index(["country_iso", "tzid"]).index)
        issues.add(check, f"{prefix}_TZID_OUT_OF_UNIVERSE", int(stray.sum()), "tzid outside Z(c)")


def validate(identity: dict, receipt: dict, sealed: list[dict], tables: dict, events: pd.DataFrame,
             trace_totals: dict, universe_doc: dict, policy_digests: dict, state_status: dict,
             universe: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """-> (validation report, issue table)."""
    s1, s2, s3, s4, za = (tables[k] for k in ("s1", "s2", "s3", "s4", "zone_alloc"))
    issues = _Issues()
    # S0
    gate = receipt.get("upstream_gates", {})
    issues.add("CHK_S0_GATE_SEALED_INPUTS", "S0_GATE_STATUS", sum(g.get("status") != "PASS" for g in gate.values()),
               "upstream gate not PASS")
    issues.add("CHK_S0_GATE_SEALED_INPUTS", "S0_GATE_MANIFEST_MISMATCH",
               int(receipt.get("manifest_fingerprint") != identity["manifest_fingerprint"]), "receipt fingerprint")
    issues.add("CHK_S0_GATE_SEALED_INPUTS", "S0_GATE_PARAMETER_MISMATCH",
               int(receipt.get("parameter_hash") != identity["parameter_hash"]), "receipt parameter_hash")
    sealed_pol = {r["logical_id"]: r["sha256_hex"] for r in sealed if r["artefact_kind"] == "policy"}
    issues.add("CHK_S0_GATE_SEALED_INPUTS", "S0_SEALED_POLICY_MISSING",
               sum(sealed_pol.get(p) != d for p, d in policy_digests.items()), "policy missing or digest differs")
    # S1
    issues.add("CHK_S1_DOMAIN_COUNTS", "S1_DUPLICATE_PAIR", _duplicates(s1, PAIR), "duplicate pairs")
    sc = s1["site_count"]
    issues.add("CHK_S1_DOMAIN_COUNTS", "S1_SITE_COUNT_INVALID", int((sc.isna() | (sc < 1)).sum()), "site_count < 1")
    zc = universe.groupby("country_iso").size()
    bad_z = s1["zone_count_country"].to_numpy() != zc.reindex(s1["legal_country_iso"]).to_numpy()
    issues.add("CHK_S1_DOMAIN_COUNTS", "S1_SITE_COUNT_MISMATCH", int(bad_z.sum()), "zone_count_country != |Z(c)|")
    # S2
    issues.add("CHK_S2_PRIORS_ZONE_UNIVERSE", "S2_DUPLICATE_ZONE", _duplicates(s2, ["country_iso", "tzid"]),
               "duplicate zones")
    uni = universe[universe["country_iso"].isin(set(s2["country_iso"]))]
    missing, extra = _set_diff(uni, s2, ["country_iso", "tzid"])
    issues.add("CHK_S2_PRIORS_ZONE_UNIVERSE", "S2_DUPLICATE_ZONE", missing + extra, "priors differ from Z(c)")
    issues.add("CHK_S2_PRIORS_ZONE_UNIVERSE", "S2_ALPHA_INVALID",
               int((~np.isfinite(s2["alpha_effective"]) | (s2["alpha_effective"] <= 0)).sum()), "alpha <= 0")
    sums = s2.groupby("country_iso", sort=False).agg(tot=("alpha_effective", "sum"), rep=("alpha_sum_country", "first"))
    issues.add("CHK_S2_PRIORS_ZONE_UNIVERSE", "S2_ALPHA_SUM_MISMATCH",
               int((np.abs(sums["tot"] - sums["rep"]) > 1e-12 * np.maximum(1, sums["rep"])).sum()), "alpha sum")
    # S3
    expected = _expected_triplets(s1, s2)
    _check_zone_table(issues, "CHK_S3_DOMAIN_ALIGNMENT", "S3", s3, expected, s2)
    share_sum = s3.groupby(PAIR, sort=False)["share_drawn"].sum()
    issues.add("CHK_S3_SHARE_SUM", "S3_SHARE_SUM_MISMATCH",
               int((~np.isfinite(share_sum) | (np.abs(share_sum - 1.0) > 1e-12)).sum()), "shares do not sum to 1")
    esc_pairs = s1.loc[s1["is_escalated"], PAIR]
    ev_pairs = events.rename(columns={"country_iso": "legal_country_iso"})
    missing, extra = _set_diff(esc_pairs, ev_pairs, PAIR)
    issues.add("CHK_S3_RNG_ACCOUNTING", "S3_RNG_EVENT_MISSING", missing, "escalated pair without event")
    issues.add("CHK_S3_RNG_ACCOUNTING", "S3_RNG_EVENT_EXTRA", extra, "event without escalated pair")
    issues.add("CHK_S3_RNG_ACCOUNTING", "S3_RNG_DUPLICATE_EVENT", _duplicates(ev_pairs, PAIR), "duplicates")
    bad_env = (events["rng_counter_after"] - events["rng_counter_before"] != events["blocks"]) | \
              (events["draws"].astype(np.int64) != events["zone_count"])
    issues.add("CHK_S3_RNG_ACCOUNTING", "S3_RNG_TRACE_MISMATCH", int(bad_env.sum()), "event envelope inconsistent")
    tot_ok = (trace_totals.get("events_total") == len(events)
              and trace_totals.get("blocks_total") == int(events["blocks"].sum())
              and trace_totals.get("draws_total") == int(events["draws"].astype(np.int64).sum()))
    issues.add("CHK_S3_RNG_ACCOUNTING", "S3_RNG_TRACE_MISMATCH", int(not tot_ok), "trace totals != event sums")
    # S4
    _check_zone_table(issues, "CHK_S4_DOMAIN_ALIGNMENT", "S4", s4, expected, s2)
    agg = s4.groupby(PAIR, sort=False).agg(tot=("zone_site_count", "sum"), rep=("zone_site_count_sum", "first"))
    n1 = s1.set_index(PAIR)["site_count"].reindex(agg.index)
    issues.add("CHK_S4_COUNT_CONSERVATION", "S4_COUNT_CONSERVATION",
               int(((agg["tot"] != agg["rep"]) | (agg["rep"] != n1)).sum()), "counts not conserved")
    # S5
    missing, extra = _set_diff(s4, za, TRIPLET)
    issues.add("CHK_S5_ZONE_ALLOC_COUNTS", "S5_ALLOC_MISSING_TRIPLET", missing, "zone_alloc misses S4 rows")
    issues.add("CHK_S5_ZONE_ALLOC_COUNTS", "S5_ALLOC_EXTRA_TRIPLET", extra, "zone_alloc rows not in S4")
    if not missing and not extra and len(za) == len(s4):
        issues.add("CHK_S5_ZONE_ALLOC_COUNTS", "S5_ALLOC_COUNT_MISMATCH",
                   int((za["zone_site_count"].to_numpy() != s4["zone_site_count"].to_numpy()).sum()), "counts != S4")
        issues.add("CHK_S5_ZONE_ALLOC_COUNTS", "S5_ALLOC_SUM_MISMATCH",
                   int((za["site_count"].to_numpy() != za["zone_site_count_sum"].to_numpy()).sum()), "totals != S1")
    parts = universe_components(s2, za, policy_digests)
    issues.add("CHK_S5_UNIVERSE_HASH_DIGESTS", "S5_DIGEST_MISMATCH",
               sum(universe_doc.get(k) != v for k, v in parts.items()), "component digest does not recompute")
    routing = combine(parts)
    issues.add("CHK_S5_UNIVERSE_HASH_COMBINED", "S5_ROUTING_HASH_MISMATCH",
               int(universe_doc.get("routing_universe_hash") != routing), "universe hash does not recompute")
    issues.add("CHK_S5_UNIVERSE_HASH_COMBINED", "S5_ALLOC_ROUTING_HASH_MISMATCH",
               int((za["routing_universe_hash"] != routing).sum()), "row hash differs")
    # state status consistency
    owners = {"S1": ["CHK_S1_DOMAIN_COUNTS"], "S2": ["CHK_S2_PRIORS_ZONE_UNIVERSE"],
              "S3": ["CHK_S3_DOMAIN_ALIGNMENT", "CHK_S3_SHARE_SUM", "CHK_S3_RNG_ACCOUNTING"],
              "S4": ["CHK_S4_DOMAIN_ALIGNMENT", "CHK_S4_COUNT_CONSERVATION"],
              "S5": ["CHK_S5_ZONE_ALLOC_COUNTS", "CHK_S5_UNIVERSE_HASH_DIGESTS", "CHK_S5_UNIVERSE_HASH_COMBINED"]}
    for state, checks in owners.items():
        failed = any(issues.counts[c] > 0 for c in checks)
        if (state_status.get(state) == "PASS") == failed:
            issues.add("CHK_STATE_STATUS_CONSISTENCY", "STATE_STATUS_MISMATCH", 1, f"{state} status disagrees")
    return _report(identity, issues, tables, events)


def _report(identity: dict, issues: _Issues, tables: dict, events: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    checks = []
    for cid in sorted(CHECKS):
        n = issues.counts[cid]
        status = "PASS" if n == 0 else ("FAIL" if CHECKS[cid] == "ERROR" else "WARN")
        checks.append({"check_id": cid, "status": status, "severity": CHECKS[cid], "affected_count": n})
    statuses = [c["status"] for c in checks]
    report = {
        "manifest_fingerprint": identity["manifest_fingerprint"], "parameter_hash": identity["parameter_hash"],
        "overall_status": "FAIL" if "FAIL" in statuses else "PASS",
        "checks_passed_count": statuses.count("PASS"), "checks_failed_count": statuses.count("FAIL"),
        "checks_warn_count": statuses.count("WARN"), "checks": checks,
        "metrics": {"pairs_total": len(tables["s1"]), "pairs_escalated": int(tables["s1"]["is_escalated"].sum()),
                    "s3_rows": len(tables["s3"]), "s4_rows": len(tables["s4"]),
                    "zone_alloc_rows": len(tables["zone_alloc"]), "rng_event_rows": len(events),
                    "issues_total": len(issues.rows)},
    }
    cols = ["manifest_fingerprint", "issue_code", "check_id", "severity", "message", "merchant_id",
            "legal_country_iso", "tzid", "details"]
    table = pd.DataFrame(issues.rows, columns=cols[1:])
    table.insert(0, "manifest_fingerprint", identity["manifest_fingerprint"])
    table = table.sort_values(["severity", "issue_code", "check_id"], kind="mergesort").reset_index(drop=True)
    return report, table[cols].astype(object)


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
