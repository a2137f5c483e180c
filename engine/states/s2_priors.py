"""S2: sealed alpha pack + floor/bump law -> s2_country_zone_priors (RNG-free, parameter-scoped)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.errors import EngineError

SHARE_TOL = 1e-12


def priors(universe: pd.DataFrame, alphas_doc: dict, floor_doc: dict) -> pd.DataFrame:
    """Core S2 table sorted by (country_iso, tzid). The pack must list exactly Z(c) per country."""
    rows_c, rows_z, rows_a = [], [], []
    for iso, block in alphas_doc["countries"].items():
        for entry in block["tzid_alphas"]:
            rows_c.append(iso)
            rows_z.append(entry["tzid"])
            rows_a.append(float(entry["alpha"]))
    pack = pd.DataFrame({"country_iso": rows_c, "tzid": rows_z, "alpha_raw": rows_a})
    pack = pack.sort_values(["country_iso", "tzid"], kind="mergesort").reset_index(drop=True)
    uni_countries = set(universe["country_iso"])
    unknown = sorted(set(pack["country_iso"]) - uni_countries)
    if unknown:
        raise EngineError("E3A_S2_005_ZONE_UNIVERSE_MISMATCH",
                          f"alpha pack country {unknown[0]} is not in the zone universe (unknown_country)")
    uni = universe[universe["country_iso"].isin(set(pack["country_iso"]))]
    merged = pack.merge(uni, on=["country_iso", "tzid"], how="outer", indicator=True)
    extra = merged[merged["_merge"] == "left_only"]
    if len(extra):
        r = extra.iloc[0]
        raise EngineError("E3A_S2_005_ZONE_UNIVERSE_MISMATCH",
                          f"alpha pack lists {r['tzid']} for {r['country_iso']}, which is not in Z({r['country_iso']}) "
                          f"(unmappable_tzid, {len(extra)} rows)")
    missing = merged[merged["_merge"] == "right_only"]
    if len(missing):
        r = missing.iloc[0]
        raise EngineError("E3A_S2_007_DOMAIN_MISMATCH_UNIVERSE",
                          f"alpha pack misses zone {r['tzid']} of {r['country_iso']} ({len(missing)} missing pairs)")
    absent = sorted(uni_countries - set(pack["country_iso"]))
    if absent:
        raise EngineError("E3A_S2_007_DOMAIN_MISMATCH_UNIVERSE",
                          f"alpha pack lacks country {absent[0]} of the zone universe ({len(absent)} countries)")
    _check_floor_tzids(floor_doc, set(universe["tzid"]))
    floors = {f["tzid"]: (float(f["floor_value"]), float(f["bump_threshold"])) for f in floor_doc["floors"]}
    tz = pack["tzid"].to_numpy(dtype=object)
    floor_value = np.array([floors.get(t, (0.0, 1.0))[0] for t in tz], dtype=np.float64)
    bump_threshold = np.array([floors.get(t, (0.0, 1.0))[1] for t in tz], dtype=np.float64)
    alpha_raw = pack["alpha_raw"].to_numpy(dtype=np.float64)
    countries = pack["country_iso"].to_numpy(dtype=object)
    starts = np.flatnonzero(np.r_[True, countries[1:] != countries[:-1]])
    sizes = np.diff(np.r_[starts, len(countries)])
    raw_sum = np.repeat(_ordered_sums(alpha_raw, starts, sizes), sizes)
    share_raw = np.where(raw_sum > 0, alpha_raw / np.where(raw_sum > 0, raw_sum, 1.0), 0.0)
    floor_alpha = np.where(share_raw >= bump_threshold, floor_value, 0.0)
    alpha_eff = np.maximum(alpha_raw, floor_alpha)
    if (alpha_eff <= 0).any() or not np.isfinite(alpha_eff).all():
        raise EngineError("E3A_S2_008_ALPHA_VECTOR_DEGENERATE_OR_INCONSISTENT", "alpha_negative_or_zero")
    alpha_sum = np.repeat(_ordered_sums(alpha_eff, starts, sizes), sizes)
    share = alpha_eff / alpha_sum
    share_sum = _ordered_sums(share, starts, sizes)
    if np.abs(share_sum - 1.0).max(initial=0.0) > SHARE_TOL:
        raise EngineError("E3A_S2_008_ALPHA_VECTOR_DEGENERATE_OR_INCONSISTENT", "share_sum_mismatch")
    applied = alpha_eff > alpha_raw
    return pd.DataFrame({
        "country_iso": countries, "tzid": tz, "alpha_raw": alpha_raw, "alpha_effective": alpha_eff,
        "alpha_sum_country": alpha_sum, "floor_applied": applied, "bump_applied": applied.copy(),
        "share_effective": share,
    })


def _check_floor_tzids(floor_doc: dict, universe_tzids: set[str]) -> None:
    """A floor entry names an IANA zone (one outside every Z(c) is ignored, per the spec); a name that is
    no zone at all is a typo that would silently drop the floor."""
    import zoneinfo

    known = universe_tzids | _iana_names(zoneinfo)
    bad = sorted({f["tzid"] for f in floor_doc["floors"]} - known)
    if bad:
        raise EngineError("E3A_S2_004_PRIOR_OR_POLICY_SCHEMA_INVALID",
                          f"zone_floor_policy names unknown tzid {bad[0]!r} ({len(bad)} unknown)")


def _iana_names(zoneinfo) -> set[str]:
    global _IANA
    if _IANA is None:
        _IANA = set(zoneinfo.available_timezones())
    return _IANA


_IANA: set[str] | None = None


def _ordered_sums(values: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Left-to-right float64 sums per group (tzid-ascending order), as the law requires."""
    out = np.empty(len(starts), dtype=np.float64)
    for i, (s, k) in enumerate(zip(starts.tolist(), sizes.tolist())):
        acc = 0.0
        for v in values[s:s + k].tolist():
            acc += v
        out[i] = acc
    return out
