"""S2: sealed alpha pack + floor/bump law -> s2_country_zone_priors (RNG-free, parameter-scoped)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.core.errors import EngineError

SHARE_TOL = 1e-12


def priors(universe: pd.DataFrame, alphas_doc: dict, floor_doc: dict) -> pd.DataFrame:
    """Core S2 table sorted by (country_iso, tzid). The pack must list exactly Z(c) per country."""
    rows_c, rows_z, rows_a = [], [], []
    for iso, block in alphas_doc["countries"].items():
        for entry in block["tzid_alphas"]:
            rows_c.append(iso)
            rows_z.append(entry["tzid"])
            rows_a.append(float(entry["alpha"]))
    order = sorted(range(len(rows_c)), key=lambda i: (rows_c[i], rows_z[i]))   # (country_iso, tzid), stable
    countries = np.array([rows_c[i] for i in order], dtype=object)
    tz = np.array([rows_z[i] for i in order], dtype=object)
    alpha_raw = np.array([rows_a[i] for i in order], dtype=np.float64)
    uni_c, uni_z = universe["country_iso"].to_numpy(dtype=object), universe["tzid"].to_numpy(dtype=object)
    _check_domain(set(zip(countries.tolist(), tz.tolist())), set(zip(uni_c.tolist(), uni_z.tolist())),
                  set(uni_c.tolist()))
    _check_floor_tzids(floor_doc, set(uni_z.tolist()))
    floors = {f["tzid"]: (float(f["floor_value"]), float(f["bump_threshold"])) for f in floor_doc["floors"]}
    floor_value = np.array([floors.get(t, (0.0, 1.0))[0] for t in tz], dtype=np.float64)
    bump_threshold = np.array([floors.get(t, (0.0, 1.0))[1] for t in tz], dtype=np.float64)
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


def _check_domain(pack_keys: set, universe_keys: set, universe_countries: set) -> None:
    """The pack must list exactly Z(c) for every country of the universe (first offender in key order)."""
    pack_countries = {c for c, _ in pack_keys}
    unknown = sorted(pack_countries - universe_countries)
    if unknown:
        raise EngineError("E3A_S2_005_ZONE_UNIVERSE_MISMATCH",
                          f"alpha pack country {unknown[0]} is not in the zone universe (unknown_country)")
    extra = sorted(pack_keys - universe_keys)
    if extra:
        c, z = extra[0]
        raise EngineError("E3A_S2_005_ZONE_UNIVERSE_MISMATCH",
                          f"alpha pack lists {z} for {c}, which is not in Z({c}) (unmappable_tzid, {len(extra)} rows)")
    missing = sorted(k for k in universe_keys - pack_keys if k[0] in pack_countries)
    if missing:
        c, z = missing[0]
        raise EngineError("E3A_S2_007_DOMAIN_MISMATCH_UNIVERSE",
                          f"alpha pack misses zone {z} of {c} ({len(missing)} missing pairs)")
    absent = sorted(universe_countries - pack_countries)
    if absent:
        raise EngineError("E3A_S2_007_DOMAIN_MISMATCH_UNIVERSE",
                          f"alpha pack lacks country {absent[0]} of the zone universe ({len(absent)} countries)")


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
