"""The metric pack (METRICS.md §1-§7): pure, vectorised functions over the five realism surfaces.

``metric_pack(tables)`` reads ``tables["s1" | "s2" | "s3" | "s4" | "zone_alloc"]`` (columns as in
docs/ARCHITECTURE.md) and returns ``{"s1": {...}, "s2": {...}, "s3": {...}, "s4": {...},
"zone_alloc": {...}}`` with JSON-native values (int, float, bool, str, list, dict). No IO.
Pairs are found by hashing their keys (``pd.factorize``), never by relying on row order, except
for the "first row" of §4, which is the first row of the pair in table order.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from engine.errors import EngineError
from engine.metrics.quantiles import median, p75, p90, rate

E_METRICS_INPUT = "E3A_MET_001_INPUT_INVALID"
E_METRICS_ESCALATED_WITHOUT_S4 = "E3A_MET_002_ESCALATED_PAIR_WITHOUT_S4_ROWS"

TABLE_NAMES = ("s1", "s2", "s3", "s4", "zone_alloc")
REQUIRED_COLUMNS = {
    "s1": ("merchant_id", "legal_country_iso", "site_count", "zone_count_country", "is_escalated", "decision_reason"),
    "s2": ("country_iso", "tzid", "share_effective", "floor_applied", "bump_applied"),
    "s3": ("merchant_id", "legal_country_iso", "tzid", "share_drawn"),
    "s4": ("merchant_id", "legal_country_iso", "tzid", "zone_site_count", "zone_site_count_sum"),
    "zone_alloc": ("merchant_id", "legal_country_iso", "tzid", "zone_site_count", "zone_site_count_sum"),
}
PAIR_KEY = ("merchant_id", "legal_country_iso")
ZONE_COUNT_CURVE_SUPPORT_MIN_PAIRS = 25
MAJOR_DIP_ABS = 0.10
TOP1_GE = 0.99
ZONE_SHARE_GE = 0.05
# site-count buckets of the S1 escalation curve: (label, lowest site_count, highest or None)
SITE_COUNT_BUCKETS = (("1-2", 1, 2), ("3-4", 3, 4), ("5-9", 5, 9), ("10-19", 10, 19),
                      ("20-34", 20, 34), ("35-99", 35, 99), ("100+", 100, None))


# ----------------------------------------------------------------------------- helpers

def _check_columns(name: str, frame: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS[name] if c not in frame.columns]
    if missing:
        raise EngineError(E_METRICS_INPUT, f"table {name} lacks column(s) {', '.join(missing)}")


def pair_codes(frame: pd.DataFrame, keys: tuple[str, ...] = PAIR_KEY) -> tuple[np.ndarray, np.ndarray]:
    """(group code per row, first row index per group); codes number groups by first appearance."""
    combined: np.ndarray | None = None
    for key in keys:
        codes, uniques = pd.factorize(frame[key], sort=False, use_na_sentinel=False)
        codes = codes.astype(np.int64)
        combined = codes if combined is None else combined * max(len(uniques), 1) + codes
    if combined is None or combined.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    group, _ = pd.factorize(combined, sort=False)
    group = group.astype(np.int64)
    first = np.flatnonzero(~pd.Series(group).duplicated().to_numpy())
    return group, first


def _group_max(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    if n_groups == 0:
        return np.zeros(0, dtype=values.dtype)
    return pd.Series(values).groupby(group, sort=True).max().to_numpy()


def _count(group: np.ndarray, n_groups: int, mask: np.ndarray | None = None) -> np.ndarray:
    weights = None if mask is None else mask.astype(np.float64)
    return np.bincount(group, weights=weights, minlength=n_groups).astype(np.int64)


def count_surface_pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """§4 per-pair aggregation of a count surface (S4 or zone_alloc), one row per pair."""
    group, first = pair_codes(frame)
    n = int(first.size)
    counts = frame["zone_site_count"].to_numpy(dtype=np.int64)
    zone_total = np.bincount(group, weights=counts.astype(np.float64), minlength=n).astype(np.int64)
    zone_max = _group_max(counts, group, n)
    total_per_row = zone_total[group]
    with np.errstate(divide="ignore", invalid="ignore"):
        row_share = np.where(total_per_row > 0, counts / np.maximum(total_per_row, 1), 0.0)
        top1 = np.where(zone_total > 0, zone_max / np.maximum(zone_total, 1), 0.0)
    reported = frame["zone_site_count_sum"].to_numpy(dtype=np.int64)[first]
    out = pd.DataFrame({
        "merchant_id": frame["merchant_id"].to_numpy()[first],
        "legal_country_iso": frame["legal_country_iso"].to_numpy()[first],
        "zone_total": zone_total,
        "zone_max": zone_max,
        "nonzero_zone_count": _count(group, n, counts > 0),
        "zones_ge_005": _count(group, n, (total_per_row > 0) & (row_share >= ZONE_SHARE_GE)),
        "reported_total": reported,
        "top1_share": top1.astype(np.float64),
    })
    out["count_conserved"] = out["zone_total"].to_numpy() == out["reported_total"].to_numpy()
    if "site_count" in frame.columns:
        out["site_count"] = frame["site_count"].to_numpy(dtype=np.int64)[first]
    return out


# ----------------------------------------------------------------------------- S1

def _escalation_rows(keys: np.ndarray, escalated: np.ndarray) -> list[dict]:
    frame = pd.DataFrame({"k": keys, "e": escalated})
    agg = frame.groupby("k", sort=True)["e"].agg(["size", "sum"])
    rows = []
    for key, size, esc in zip(agg.index, agg["size"], agg["sum"]):
        rows.append({"key": key, "pairs": int(size), "pairs_escalated": int(esc),
                     "escalation_rate": float(esc) / float(size) if size else 0.0})
    return rows


def zone_count_curve_shape(curve: list[dict], min_pairs: int = ZONE_COUNT_CURVE_SUPPORT_MIN_PAIRS) -> dict:
    """§1 chain over supported buckets: violations, max dip and dips > 0.10 (all strict)."""
    supported = [b for b in sorted(curve, key=lambda b: b["zone_count_country"]) if b["pairs"] >= min_pairs]
    violations, dips = 0, []
    for prev, cur in zip(supported, supported[1:]):
        delta = cur["escalation_rate"] - prev["escalation_rate"]
        if delta < 0:
            violations += 1
            dips.append(-delta)
    return {
        "zone_count_curve_supported_buckets": len(supported),
        "zone_count_curve_monotonic_violations": violations,
        "zone_count_curve_major_dip_max_abs": float(max(dips)) if dips else 0.0,
        "zone_count_curve_major_dip_count_gt_010": sum(1 for d in dips if d > MAJOR_DIP_ABS),
    }


def s1_metrics(s1: pd.DataFrame) -> dict:
    escalated = s1["is_escalated"].to_numpy(dtype=bool)
    total = int(escalated.size)
    n_esc = int(escalated.sum())
    reasons = s1["decision_reason"].astype(str).value_counts(sort=False)
    curve = []
    for row in _escalation_rows(s1["zone_count_country"].to_numpy(dtype=np.int64), escalated):
        zc = int(row.pop("key"))
        curve.append({"zone_count_country": zc, **row,
                      "supported": row["pairs"] >= ZONE_COUNT_CURVE_SUPPORT_MIN_PAIRS})
    sites = s1["site_count"].to_numpy(dtype=np.int64)
    bucket_idx = np.searchsorted(np.array([lo for _, lo, _ in SITE_COUNT_BUCKETS[1:]]), sites, side="right")
    by_bucket = {int(r["key"]): r for r in _escalation_rows(bucket_idx, escalated)}
    site_curve = []
    for i, (label, lo, hi) in enumerate(SITE_COUNT_BUCKETS):
        row = by_bucket.get(i, {"pairs": 0, "pairs_escalated": 0, "escalation_rate": 0.0})
        site_curve.append({"bucket": label, "site_count_min": lo, "site_count_max": hi,
                           "pairs": row["pairs"], "pairs_escalated": row["pairs_escalated"],
                           "escalation_rate": row["escalation_rate"]})
    return {
        "pairs_total": total,
        "pairs_escalated": n_esc,
        "pairs_monolithic": total - n_esc,
        "escalation_rate": n_esc / total if total else 0.0,
        "decision_reason_counts": {str(k): int(v) for k, v in sorted(reasons.items())},
        "zone_count_curve": curve,
        "zone_count_curve_support_min_pairs": ZONE_COUNT_CURVE_SUPPORT_MIN_PAIRS,
        **zone_count_curve_shape(curve),
        "site_count_curve": site_curve,
    }


# ----------------------------------------------------------------------------- S2

def s2_country_table(s2: pd.DataFrame) -> pd.DataFrame:
    """Per country: tz_count (distinct tzid), top1_share, hhi."""
    share = s2["share_effective"].to_numpy(dtype=np.float64)
    frame = pd.DataFrame({"country_iso": s2["country_iso"].to_numpy(), "tzid": s2["tzid"].to_numpy(),
                          "share": share, "share_sq": share * share})
    grouped = frame.groupby("country_iso", sort=True)
    return pd.DataFrame({"tz_count": grouped["tzid"].nunique(), "top1_share": grouped["share"].max(),
                         "hhi": grouped["share_sq"].sum()})


def s2_metrics(s2: pd.DataFrame) -> dict:
    countries = s2_country_table(s2)
    multi = countries[countries["tz_count"] > 1]
    tz_count = countries["tz_count"].to_numpy(dtype=np.float64)
    top1_multi = multi["top1_share"].to_numpy(dtype=np.float64)
    return {
        "countries_total": int(len(countries)),
        "countries_multi_tz_total": int(len(multi)),
        "tz_count_median": median(tz_count),
        "tz_count_p90": p90(tz_count),
        "top1_share_median_multi_tz": median(top1_multi),
        "top1_share_p75_multi_tz": p75(top1_multi),
        "share_top1_ge_099_multi_tz": rate(top1_multi >= TOP1_GE),
        "hhi_median_multi_tz": median(multi["hhi"].to_numpy(dtype=np.float64)),
        "floor_applied_rate": rate(s2["floor_applied"].to_numpy(dtype=bool)),
        "bump_applied_rate": rate(s2["bump_applied"].to_numpy(dtype=bool)),
    }


# ----------------------------------------------------------------------------- S3

def s3_pair_table(s3: pd.DataFrame) -> pd.DataFrame:
    """Per escalated pair: top1_share (max share_drawn) and zones_ge_005."""
    group, first = pair_codes(s3)
    n = int(first.size)
    share = s3["share_drawn"].to_numpy(dtype=np.float64)
    return pd.DataFrame({
        "merchant_id": s3["merchant_id"].to_numpy()[first],
        "legal_country_iso": s3["legal_country_iso"].to_numpy()[first],
        "top1_share": _group_max(share, group, n).astype(np.float64),
        "zones_ge_005": _count(group, n, share >= ZONE_SHARE_GE),
    })


def s3_cell_table(s3: pd.DataFrame) -> pd.DataFrame:
    """Per (legal_country_iso, tzid) cell: merchant_count and the sample std (ddof=1) of share_drawn."""
    cell, first = pair_codes(s3, ("legal_country_iso", "tzid"))
    n = int(first.size)
    share = s3["share_drawn"].to_numpy(dtype=np.float64)
    rows = np.bincount(cell, minlength=n).astype(np.int64)
    distinct = pd.DataFrame({"c": cell, "m": s3["merchant_id"].to_numpy()}).drop_duplicates()
    merchants = np.bincount(distinct["c"].to_numpy(dtype=np.int64), minlength=n).astype(np.int64)
    mean = np.bincount(cell, weights=share, minlength=n) / np.maximum(rows, 1)
    dev = share - mean[cell]  # two-pass: mean first, then squared deviations
    ss = np.bincount(cell, weights=dev * dev, minlength=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        std = np.where(rows > 1, np.sqrt(ss / np.maximum(rows - 1, 1)), np.nan)
    return pd.DataFrame({
        "legal_country_iso": s3["legal_country_iso"].to_numpy()[first],
        "tzid": s3["tzid"].to_numpy()[first],
        "rows": rows, "merchant_count": merchants, "mean_share": mean, "merchant_share_std": std,
    })


def s3_metrics(s3: pd.DataFrame) -> dict:
    pairs = s3_pair_table(s3)
    cells = s3_cell_table(s3)
    kept = cells.loc[cells["merchant_count"] > 1, "merchant_share_std"].to_numpy(dtype=np.float64)
    top1 = pairs["top1_share"].to_numpy(dtype=np.float64)
    zones = pairs["zones_ge_005"].to_numpy(dtype=np.float64)
    return {
        "pairs_total": int(len(pairs)),
        "top1_share_median": median(top1),
        "top1_share_p90": p90(top1),
        "share_pairs_zones_ge_005_ge_2": rate(zones >= 2),
        "zones_ge_005_p50": median(zones),
        "merchant_share_std_median": median(kept),
        "merchant_share_std_p90": p90(kept),
        "merchant_share_std_groups": int(kept.size),
    }


# ----------------------------------------------------------------------------- S4 / zone_alloc

def escalated_pairs(s1: pd.DataFrame) -> pd.DataFrame:
    esc = s1.loc[s1["is_escalated"].to_numpy(dtype=bool), list(PAIR_KEY)]
    return esc.drop_duplicates(ignore_index=True)


def s4_escalated_table(s1: pd.DataFrame, s4_pairs: pd.DataFrame) -> pd.DataFrame:
    """Escalated S1 pairs left-joined to S4 pair aggregates; a pair with no S4 rows aborts (§5)."""
    esc = escalated_pairs(s1)
    left = esc.assign(_m=esc["merchant_id"].to_numpy(dtype=np.uint64), _c=esc["legal_country_iso"].astype(str))
    right = s4_pairs.drop(columns=list(PAIR_KEY)).assign(
        _m=s4_pairs["merchant_id"].to_numpy(dtype=np.uint64), _c=s4_pairs["legal_country_iso"].astype(str))
    joined = left.merge(right, on=["_m", "_c"], how="left", validate="one_to_one")
    missing = joined["zone_total"].isna().to_numpy()
    if missing.any():
        first = joined.loc[missing].iloc[0]
        raise EngineError(E_METRICS_ESCALATED_WITHOUT_S4,
                          f"{int(missing.sum())} escalated pair(s) have no S4 rows, first "
                          f"({int(first['_m'])}, {first['_c']}); no metric pack")
    return joined.drop(columns=["_m", "_c"])


def _conservation(pairs: pd.DataFrame) -> dict:
    conserved = pairs["count_conserved"].to_numpy(dtype=bool)
    out = {"count_conservation_all_pairs": bool(conserved.all()),
           "count_conservation_violations": int((~conserved).sum())}
    if "site_count" in pairs.columns:
        out["site_count_mismatch_pairs"] = int(
            (pairs["zone_total"].to_numpy() != pairs["site_count"].to_numpy()).sum())
    return out


def s4_metrics(s1: pd.DataFrame, s4: pd.DataFrame) -> dict:
    pairs = count_surface_pairs(s4)
    esc = s4_escalated_table(s1, pairs)
    nonzero = esc["nonzero_zone_count"].to_numpy(dtype=np.int64)
    top1 = esc["top1_share"].to_numpy(dtype=np.float64)
    return {
        "pairs_total": int(len(pairs)),
        "pairs_escalated_total": int(len(esc)),
        "escalated_multi_zone_rate": rate(nonzero > 1),
        "share_pairs_single_zone": rate(nonzero == 1),
        "share_pairs_zones_ge_005_ge_2": rate(esc["zones_ge_005"].to_numpy(dtype=np.int64) >= 2),
        "top1_share_median": median(top1),
        "top1_share_p75": p75(top1),
        **_conservation(pairs),
    }


def zone_alloc_metrics(zone_alloc: pd.DataFrame) -> dict:
    pairs = count_surface_pairs(zone_alloc)
    top1 = pairs["top1_share"].to_numpy(dtype=np.float64)
    return {
        "pairs_total": int(len(pairs)),
        "top1_share_median": median(top1),
        "top1_share_p75": p75(top1),
        **_conservation(pairs),
    }


# ----------------------------------------------------------------------------- the pack

def metric_pack(tables: Mapping[str, pd.DataFrame]) -> dict:
    """The full pack: ``{"s1", "s2", "s3", "s4", "zone_alloc"}`` sections (METRICS §1-§7)."""
    for name in TABLE_NAMES:
        if name not in tables or tables[name] is None:
            raise EngineError(E_METRICS_INPUT, f"table {name} is missing; no metric pack")
        _check_columns(name, tables[name])
    return {
        "s1": s1_metrics(tables["s1"]),
        "s2": s2_metrics(tables["s2"]),
        "s3": s3_metrics(tables["s3"]),
        "s4": s4_metrics(tables["s1"], tables["s4"]),
        "zone_alloc": zone_alloc_metrics(tables["zone_alloc"]),
    }


def lookup(pack: Mapping, dotted: str):
    """``lookup(pack, "s4.top1_share_median")``; None when any level is missing."""
    node = pack
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
