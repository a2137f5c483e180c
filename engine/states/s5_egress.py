"""S5: zone_alloc egress (a copy of S4's counts with lineage) and the routing universe hash."""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.hashing import sha256_hex, table_digest
from engine.states.common import ZONE_KEY
from engine.states.lineage import constant_strings, with_lineage

ZERO_HASH = "0" * 64
S2_KEY = ["country_iso", "tzid"]


def universe_components(s2: pd.DataFrame, zone_alloc: pd.DataFrame, policy_digests: dict) -> dict:
    """Component digests in composition order; zone_alloc is digested with its hash column excluded."""
    parts = {
        "zone_alpha_digest": table_digest(s2, None),
        "theta_digest": policy_digests["zone_mixture_policy"],
        "zone_floor_digest": policy_digests["zone_floor_policy"],
    }
    if "day_effect_policy" in policy_digests:
        parts["day_effect_digest"] = policy_digests["day_effect_policy"]
    parts["zone_alloc_digest"] = table_digest(zone_alloc, None, exclude=("routing_universe_hash",))
    return parts


def combine(parts: dict) -> str:
    return sha256_hex("".join(parts.values()).encode("ascii"))


def egress(s1: pd.DataFrame, s2: pd.DataFrame, s4: pd.DataFrame, lineage: dict,
           policy_digests: dict) -> tuple[pd.DataFrame, dict]:
    """-> (zone_alloc, zone_alloc_universe_hash document)."""
    sites = s1.loc[s1["is_escalated"].to_numpy(dtype=bool), "site_count"].to_numpy(dtype=np.int64)
    k = s4.groupby(["merchant_id", "legal_country_iso"], sort=False).size().to_numpy()
    zone_alloc = with_lineage(s4[ZONE_KEY + ["zone_site_count", "zone_site_count_sum", "alpha_sum_country"]],
                              "zone_alloc", {**lineage, "routing_universe_hash": ZERO_HASH},
                              extra={"site_count": np.repeat(sites, k)})
    parts = universe_components(s2, zone_alloc, policy_digests)
    routing = combine(parts)
    zone_alloc["routing_universe_hash"] = constant_strings(routing, len(zone_alloc))
    doc = {"manifest_fingerprint": lineage["manifest_fingerprint"], "parameter_hash": lineage["parameter_hash"],
           "seed": int(lineage["seed"]), **parts, "routing_universe_hash": routing, "version": "1.0.0",
           "notes": "zone_alloc_digest = canonical row digest (engine.hashing.table_digest), routing_universe_hash "
                    "column excluded; composition order as listed"}
    return zone_alloc, doc
