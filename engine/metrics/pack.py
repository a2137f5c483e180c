"""The metric pack (METRICS.md §1-§7): pure, vectorised functions over the five realism surfaces.

``metric_pack(tables)`` reads ``tables["s1" | "s2" | "s3" | "s4" | "zone_alloc"]`` and returns ``{"s1": {...}, ...,
"zone_alloc": {...}}`` with JSON-native values (int, float, bool, str, list, dict). No IO.

Input contract: only the columns of ``REQUIRED_COLUMNS`` are read (plus zone_alloc's ``site_count`` when present),
so the states' lineage-free *core* tables (the published tables minus their constant lineage columns; zone_alloc's
core is S4's core with ``site_count`` per row) give the same pack, bit for bit, as the published tables.

Strings become integer codes once per pack; pairs are runs of equal (merchant, country) codes (one stable sort
only for unsorted tables), so nothing depends on row order except §4's "first row" of a pair. Values are those of
the pandas formulation replaced (tests/metrics/test_pack_pinned.py).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from engine.core.errors import EngineError
from engine.metrics import keys
from engine.metrics.grouping import Groups, lookup_pairs
from engine.metrics.lines import TOP1_GE
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
ZONE_SHARE_GE = 0.05
# site-count buckets of the S1 escalation curve: (label, lowest site_count, highest or None)
SITE_COUNT_BUCKETS = (("1-2", 1, 2), ("3-4", 3, 4), ("5-9", 5, 9), ("10-19", 10, 19),
                      ("20-34", 20, 34), ("35-99", 35, 99), ("100+", 100, None))


# ----------------------------------------------------------------------------- helpers

def _check_columns(name: str, frame: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS[name] if c not in frame.columns]
    if missing:
        raise EngineError(E_METRICS_INPUT, f"table {name} lacks column(s) {', '.join(missing)}")


def _int_column(frame: pd.DataFrame, column: str) -> np.ndarray:
    return frame[column].to_numpy(dtype=np.int64)


def _surface(frame: pd.DataFrame, country: np.ndarray) -> dict[str, np.ndarray]:
    """§4 per pair (first-appearance order) given the rows' country codes; ``legal_country_iso``
    is left as the pair's first row index (callers that need strings take them)."""
    merchant = np.asarray(frame["merchant_id"].to_numpy(), dtype=np.uint64)
    gid, n, first = keys.first_appearance_groups((merchant, country))
    g = Groups(None, codes=gid, n=n)
    counts = _int_column(frame, "zone_site_count")
    zone_total = g.sum(counts)
    zone_max = g.max(counts)
    total_per_row = g.broadcast(zone_total)
    positive = total_per_row > 0
    row_share = np.divide(counts, total_per_row, out=np.zeros(counts.size, dtype=np.float64), where=positive)
    top1 = np.divide(zone_max, zone_total, out=np.zeros(g.n, dtype=np.float64), where=zone_total > 0)
    reported = g.first_of(_int_column(frame, "zone_site_count_sum"))
    out = {
        "merchant_id": merchant[first], "legal_country_iso": first,
        "zone_total": zone_total, "zone_max": zone_max,
        "nonzero_zone_count": g.count(counts > 0),
        "zones_ge_005": g.count(positive & (row_share >= ZONE_SHARE_GE)),
        "reported_total": reported, "top1_share": top1,
        "count_conserved": zone_total == reported,
    }
    if "site_count" in frame.columns:
        out["site_count"] = g.first_of(_int_column(frame, "site_count"))
    return out


def count_surface_arrays(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """§4 per-pair aggregation of a count surface (S4 or zone_alloc) as arrays in pair order."""
    out = _surface(frame, keys.string_codes([frame["legal_country_iso"]])[0])
    out["legal_country_iso"] = frame["legal_country_iso"].take(out["legal_country_iso"])
    return out


def count_surface_pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """§4 per-pair table (one row per pair, first-appearance order); for reports and tests."""
    arrays = count_surface_arrays(frame)
    arrays["legal_country_iso"] = arrays["legal_country_iso"].to_numpy()
    return pd.DataFrame(arrays)


# ----------------------------------------------------------------------------- S1

def _escalation_by(keys: np.ndarray, escalated: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    pairs = np.bincount(keys, minlength=n_keys).astype(np.int64)
    esc = np.bincount(keys, weights=escalated.astype(np.float64), minlength=n_keys).astype(np.int64)
    return pairs, esc


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
    rcodes, reasons = pd.factorize(s1["decision_reason"].astype(str), sort=True)
    reason_counts = np.bincount(rcodes, minlength=len(reasons))
    zc_values, zc_codes = keys.small_int_codes(_int_column(s1, "zone_count_country"))
    pairs, esc = _escalation_by(zc_codes, escalated, zc_values.size)
    curve = [{"zone_count_country": int(z), "pairs": int(p), "pairs_escalated": int(e),
              "escalation_rate": e / p if p else 0.0, "supported": bool(p >= ZONE_COUNT_CURVE_SUPPORT_MIN_PAIRS)}
             for z, p, e in zip(zc_values, pairs, esc)]
    edges = np.array([lo for _, lo, _ in SITE_COUNT_BUCKETS[1:]], dtype=np.int64)
    bucket = np.searchsorted(edges, _int_column(s1, "site_count"), side="right")
    bpairs, besc = _escalation_by(bucket, escalated, len(SITE_COUNT_BUCKETS))
    site_curve = [{"bucket": label, "site_count_min": lo, "site_count_max": hi, "pairs": int(p),
                   "pairs_escalated": int(e), "escalation_rate": e / p if p else 0.0}
                  for (label, lo, hi), p, e in zip(SITE_COUNT_BUCKETS, bpairs, besc)]
    return {
        "pairs_total": total,
        "pairs_escalated": n_esc,
        "pairs_monolithic": total - n_esc,
        "escalation_rate": n_esc / total if total else 0.0,
        "decision_reason_counts": {str(r): int(c) for r, c in zip(reasons, reason_counts)},
        "zone_count_curve": curve,
        "zone_count_curve_support_min_pairs": ZONE_COUNT_CURVE_SUPPORT_MIN_PAIRS,
        **zone_count_curve_shape(curve),
        "site_count_curve": site_curve,
    }


# ----------------------------------------------------------------------------- S2

def _s2_countries(s2: pd.DataFrame, factorized: keys.Factorized) -> dict[str, np.ndarray]:
    """Per country (first-appearance order): first row, tz_count (distinct tzid), top1_share, hhi."""
    cc, cu = factorized(s2, "country_iso")
    tc, tu = factorized(s2, "tzid")
    g = Groups(None, codes=cc.astype(np.int64), n=len(cu))
    width = max(len(tu), 1)
    distinct = np.unique(cc.astype(np.int64) * width + tc)  # one entry per (country, tzid)
    share = s2["share_effective"].to_numpy(dtype=np.float64)
    return {"first": g.first, "tz_count": np.bincount(distinct // width, minlength=g.n).astype(np.int64),
            "top1_share": g.max(share), "hhi": g.sum(share * share)}


def s2_country_table(s2: pd.DataFrame) -> pd.DataFrame:
    """Per country: tz_count (distinct tzid, zero-share zones count), top1_share, hhi."""
    c = _s2_countries(s2, keys.Factorized())
    return pd.DataFrame({"country_iso": s2["country_iso"].take(c["first"]).to_numpy(), "tz_count": c["tz_count"],
                         "top1_share": c["top1_share"], "hhi": c["hhi"]})


def s2_metrics(s2: pd.DataFrame, factorized: keys.Factorized | None = None) -> dict:
    countries = _s2_countries(s2, factorized or keys.Factorized())
    tz_count = countries["tz_count"].astype(np.float64)
    multi = tz_count > 1
    top1_multi = countries["top1_share"].astype(np.float64)[multi]
    return {
        "countries_total": int(tz_count.size),
        "countries_multi_tz_total": int(multi.sum()),
        "tz_count_median": median(tz_count),
        "tz_count_p90": p90(tz_count),
        "top1_share_median_multi_tz": median(top1_multi),
        "top1_share_p75_multi_tz": p75(top1_multi),
        "share_top1_ge_099_multi_tz": rate(top1_multi >= TOP1_GE),
        "hhi_median_multi_tz": median(countries["hhi"].astype(np.float64)[multi]),
        "floor_applied_rate": rate(s2["floor_applied"].to_numpy(dtype=bool)),
        "bump_applied_rate": rate(s2["bump_applied"].to_numpy(dtype=bool)),
    }


# ----------------------------------------------------------------------------- S3

def _s3_pairs(s3: pd.DataFrame, country: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(per escalated pair arrays, each pair's first row); first-appearance order."""
    merchant = np.asarray(s3["merchant_id"].to_numpy(), dtype=np.uint64)
    gid, n, first = keys.first_appearance_groups((merchant, country))
    g = Groups(None, codes=gid, n=n)
    share = s3["share_drawn"].to_numpy(dtype=np.float64)
    return {"merchant_id": merchant[first], "top1_share": g.max(share).astype(np.float64),
            "zones_ge_005": g.count(share >= ZONE_SHARE_GE)}, first


def s3_pair_arrays(s3: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per escalated pair: top1_share (max share_drawn) and zones_ge_005 (inclusive)."""
    pairs, first = _s3_pairs(s3, keys.string_codes([s3["legal_country_iso"]])[0])
    return {"merchant_id": pairs["merchant_id"], "legal_country_iso": s3["legal_country_iso"].take(first).to_numpy(),
            "top1_share": pairs["top1_share"], "zones_ge_005": pairs["zones_ge_005"]}


def _s3_cells(s3: pd.DataFrame, country: np.ndarray, tzid: np.ndarray) -> dict[str, np.ndarray]:
    """Per (country, tzid) cell in first-appearance order: first row, rows, distinct merchants,
    mean and sample std (ddof=1) of share_drawn (two-pass, per-cell sums in row order)."""
    width = int(tzid.max(initial=-1)) + 1
    dense = country * width + tzid
    k = (int(country.max(initial=-1)) + 1) * width
    rows = np.bincount(dense, minlength=k).astype(np.int64)
    first = np.full(k, dense.size, dtype=np.int64)
    np.minimum.at(first, dense, np.arange(dense.size, dtype=np.int64))
    cells = np.flatnonzero(rows > 0)
    cells = cells[np.argsort(first[cells], kind="stable")]
    share = s3["share_drawn"].to_numpy(dtype=np.float64)
    mean = np.bincount(dense, weights=share, minlength=k) / np.maximum(rows, 1)
    dev = share - mean[dense]  # two-pass: the mean first, then the squared deviations
    ss = np.bincount(dense, weights=dev * dev, minlength=k)[cells]
    std = np.full(cells.size, np.nan)
    np.sqrt(ss / np.maximum(rows[cells] - 1, 1), out=std, where=rows[cells] > 1)
    merchant = np.asarray(s3["merchant_id"].to_numpy(), dtype=np.uint64)
    if keys.strictly_increasing((merchant, country, tzid)):
        merchants = rows  # no (merchant, cell) twice
    else:
        _, once = np.unique(keys.dense_keys((dense, merchant))[0], return_index=True)  # a row per (cell, merchant)
        merchants = np.bincount(dense[once], minlength=k).astype(np.int64)
    return {"first": first[cells], "rows": rows[cells], "merchant_count": merchants[cells],
            "mean_share": mean[cells], "merchant_share_std": std}


def s3_cell_table(s3: pd.DataFrame) -> pd.DataFrame:
    """Per (legal_country_iso, tzid) cell: rows, distinct merchants, mean and sample std (ddof=1)."""
    country, tzid = (keys.string_codes([s3[c]])[0] for c in ("legal_country_iso", "tzid"))
    cells = _s3_cells(s3, country, tzid)
    return pd.DataFrame({
        "legal_country_iso": s3["legal_country_iso"].take(cells["first"]).to_numpy(),
        "tzid": s3["tzid"].take(cells["first"]).to_numpy(),
        "rows": cells["rows"], "merchant_count": cells["merchant_count"],
        "mean_share": cells["mean_share"], "merchant_share_std": cells["merchant_share_std"],
    })


def _s3_section(s3: pd.DataFrame, country: np.ndarray, tzid: np.ndarray) -> dict:
    pairs, _ = _s3_pairs(s3, country)
    cells = _s3_cells(s3, country, tzid)
    kept = cells["merchant_share_std"][cells["merchant_count"] > 1]
    top1 = pairs["top1_share"]
    zones = pairs["zones_ge_005"].astype(np.float64)
    return {
        "pairs_total": int(top1.size),
        "top1_share_median": median(top1),
        "top1_share_p90": p90(top1),
        "share_pairs_zones_ge_005_ge_2": rate(zones >= 2),
        "zones_ge_005_p50": median(zones),
        "merchant_share_std_median": median(kept),
        "merchant_share_std_p90": p90(kept),
        "merchant_share_std_groups": int(kept.size),
    }


def s3_metrics(s3: pd.DataFrame) -> dict:
    country, tzid = (keys.string_codes([s3[c]])[0] for c in ("legal_country_iso", "tzid"))
    return _s3_section(s3, country, tzid)


# ----------------------------------------------------------------------------- S4 / zone_alloc

def _missing_s4(s1: pd.DataFrame, rows: np.ndarray, idx: np.ndarray) -> EngineError:
    bad = np.flatnonzero(idx < 0)
    first = s1.iloc[int(rows[bad[0]])]
    return EngineError(E_METRICS_ESCALATED_WITHOUT_S4,
                       f"{bad.size} escalated pair(s) have no S4 rows, first "
                       f"({int(first['merchant_id'])}, {first['legal_country_iso']}); no metric pack")


def escalated_pair_index(s1: pd.DataFrame, surface: Mapping[str, np.ndarray]) -> np.ndarray:
    """Row index into the count-surface pair arrays of every distinct escalated S1 pair (§5).

    An escalated pair with no S4 rows aborts scoring: no metric pack.
    """
    rows = np.flatnonzero(s1["is_escalated"].to_numpy(dtype=bool))
    esc = s1.iloc[rows]
    idx = lookup_pairs(esc["merchant_id"].to_numpy(), esc["legal_country_iso"],
                       surface["merchant_id"], surface["legal_country_iso"])
    if (idx < 0).any():
        raise _missing_s4(s1, rows, idx)
    return pd.unique(idx)  # distinct pairs


def _escalated_index(s1: pd.DataFrame, country: np.ndarray, surface: Mapping[str, np.ndarray],
                     surface_country: np.ndarray) -> np.ndarray:
    """``escalated_pair_index`` on codes (distinct pairs, in pair order)."""
    rows = np.flatnonzero(s1["is_escalated"].to_numpy(dtype=bool))
    merchant = np.asarray(s1["merchant_id"].to_numpy(), dtype=np.uint64)[rows]
    idx = keys.find_rows((merchant, country[rows]), (surface["merchant_id"], surface_country))
    if (idx < 0).any():
        raise _missing_s4(s1, rows, idx)
    return np.unique(idx)


def _conservation(pairs: Mapping[str, np.ndarray]) -> dict:
    conserved = pairs["count_conserved"]
    out = {"count_conservation_all_pairs": bool(conserved.all()),
           "count_conservation_violations": int((~conserved).sum())}
    if "site_count" in pairs:
        out["site_count_mismatch_pairs"] = int((pairs["zone_total"] != pairs["site_count"]).sum())
    return out


def _s4_section(s1: pd.DataFrame, s1_country: np.ndarray, s4: pd.DataFrame, s4_country: np.ndarray) -> dict:
    pairs = _surface(s4, s4_country)
    idx = _escalated_index(s1, s1_country, pairs, s4_country[pairs["legal_country_iso"]])
    nonzero = pairs["nonzero_zone_count"][idx]
    top1 = pairs["top1_share"][idx]
    return {
        "pairs_total": int(pairs["zone_total"].size),
        "pairs_escalated_total": int(idx.size),
        "escalated_multi_zone_rate": rate(nonzero > 1),
        "share_pairs_single_zone": rate(nonzero == 1),
        "share_pairs_zones_ge_005_ge_2": rate(pairs["zones_ge_005"][idx] >= 2),
        "top1_share_median": median(top1),
        "top1_share_p75": p75(top1),
        **_conservation(pairs),
    }


def s4_metrics(s1: pd.DataFrame, s4: pd.DataFrame) -> dict:
    c1, c4 = keys.string_codes([s1["legal_country_iso"], s4["legal_country_iso"]])
    return _s4_section(s1, c1, s4, c4)


def _zone_alloc_section(zone_alloc: pd.DataFrame, country: np.ndarray) -> dict:
    pairs = _surface(zone_alloc, country)
    top1 = pairs["top1_share"]
    return {
        "pairs_total": int(top1.size),
        "top1_share_median": median(top1),
        "top1_share_p75": p75(top1),
        **_conservation(pairs),
    }


def zone_alloc_metrics(zone_alloc: pd.DataFrame) -> dict:
    return _zone_alloc_section(zone_alloc, keys.string_codes([zone_alloc["legal_country_iso"]])[0])


# ----------------------------------------------------------------------------- the pack

def metric_pack(tables: Mapping[str, pd.DataFrame], evidence=None, sections: Mapping[str, dict] | None = None) -> dict:
    """The full pack: ``{"s1", "s2", "s3", "s4", "zone_alloc"}`` sections (METRICS §1-§7), plus
    ``fidelity`` (engine.metrics.fidelity) when the world's population evidence is given.

    Reads only ``REQUIRED_COLUMNS`` (and zone_alloc's ``site_count`` when present): the lineage-free core tables
    of the states give the same pack as the published tables (the constant lineage columns are never read).
    Countries and zones are reduced to integer codes once, shared by all sections; no per-row Python objects.
    ``sections``: s1/s2/s3 sections (``s1_metrics`` etc.) and ``fidelity_prior`` (``fidelity.prior_fidelity``)
    already measured on these tables (the chain caches them by content); each equals the pack's own (a section
    groups rows by equal codes, in first-appearance order: any vocabulary gives the same)."""
    given = dict(sections or {})
    for name in TABLE_NAMES:
        if name not in tables or tables[name] is None:
            raise EngineError(E_METRICS_INPUT, f"table {name} is missing; no metric pack")
        _check_columns(name, tables[name])
    s1, s2, s3, s4, za = (tables[k] for k in TABLE_NAMES)
    factorized = keys.Factorized()
    c1, c3, c4, cz = keys.rank_codes([factorized(t, "legal_country_iso") for t in (s1, s3, s4, za)])
    pack = {
        "s1": given["s1"] if "s1" in given else s1_metrics(s1),
        "s2": given["s2"] if "s2" in given else s2_metrics(s2, factorized),
        "s3": given["s3"] if "s3" in given else _s3_section(s3, c3, keys.rank_codes([factorized(s3, "tzid")])[0]),
        "s4": _s4_section(s1, c1, s4, c4),
        "zone_alloc": _zone_alloc_section(za, cz),
    }
    if evidence is not None:
        from engine.metrics.fidelity import fidelity_metrics

        prior = {"prior": given["fidelity_prior"]} if "fidelity_prior" in given else {}
        pack["fidelity"] = fidelity_metrics(tables, evidence, factorized, **prior)
    return pack


def lookup(pack: Mapping, dotted: str):
    """``lookup(pack, "s4.top1_share_median")``; None when any level is missing."""
    node = pack
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
