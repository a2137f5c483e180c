"""What ``engine verify`` checks of the sealed tables beyond S6's own checks: values S6 never had to doubt.

S6 checks the tables the engine has just built: their domains, sums and accounting. A bundle edited and re-sealed
can keep every sum while breaking what the engine never produces: a negative count or share that still sums right,
a total raised on both sides of one table, a zone no IANA name knows, a prior whose share is not its alpha over the
country's sum, an event claiming more draws than its country has zones, a routing hash that is not text. Each is a
named failure here (:func:`value_failures`); :mod:`engine.publish.verify_content` runs it after S6.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.states import s5_egress
from engine.world.universe import known_tzids


def _count(mask) -> int:
    return int(np.count_nonzero(np.asarray(mask, dtype=bool)))


def value_failures(tables: dict[str, pd.DataFrame], events: pd.DataFrame) -> list[str]:
    """Every check that fails, as "what (rows)": empty when the values are the engine's kind of values."""
    s2, s3, s4, za = tables["s2"], tables["s3"], tables["s4"], tables["zone_alloc"]
    found = {}
    share = s3["share_drawn"].to_numpy(dtype=np.float64)
    found["S3 share outside [0, 1]"] = _count(~((share >= 0.0) & (share <= 1.0)))
    for name, frame in (("S4", s4), ("zone_alloc", za)):
        found[f"{name} count below 0"] = _count(frame["zone_site_count"].to_numpy() < 0)
    if len(za) == len(s4):   # S6 compared them row by row when the rows agree; their totals too, here
        found["zone_alloc total differs from S4's"] = _count(
            za["zone_site_count_sum"].to_numpy() != s4["zone_site_count_sum"].to_numpy())
    found["tzid unknown to tzdata"] = _count(~s2["tzid"].astype(str).isin(known_tzids()))
    alpha, total = (s2[c].to_numpy(dtype=np.float64) for c in ("alpha_effective", "alpha_sum_country"))
    expected = np.divide(alpha, total, out=np.full_like(alpha, np.nan), where=total > 0)
    found["S2 share not alpha over its country's sum"] = _count(
        ~np.isclose(s2["share_effective"].to_numpy(dtype=np.float64), expected, rtol=1e-9, atol=1e-12))
    zones = s2.groupby("country_iso")["tzid"].size()
    claimed = events["country_iso"].astype(str).map(zones).to_numpy(dtype=np.float64, na_value=np.nan)
    found["RNG event zone count not its country's |Z(c)|"] = _count(events["zone_count"].to_numpy() != claimed)
    routing = za[s5_egress.ROUTING]
    found["routing hash not text"] = _count(~routing.map(type).eq(str).to_numpy())
    return [f"{what} ({n})" for what, n in found.items() if n]
