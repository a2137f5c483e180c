"""S5: zone_alloc egress (a copy of S4's counts with lineage) and the routing universe hash."""

from __future__ import annotations

import pandas as pd

from engine.core.hashing import chunked_table_digest, sha256_hex, table_digest
from engine.publish.serialize import ROW_GROUP_ROWS
from engine.states.lineage import LineageColumns

ZERO_HASH = "0" * 64
ROUTING = "routing_universe_hash"
S2_KEY = ["country_iso", "tzid"]


def universe_components(s2: pd.DataFrame, zone_alloc: pd.DataFrame, policy_digests: dict,
                        zone_alloc_digest: str | None = None) -> dict:
    """Component digests in composition order; zone_alloc is digested with its hash column excluded
    (``zone_alloc_digest`` gives that digest when it was computed a row group at a time)."""
    parts = {
        "zone_alpha_digest": table_digest(s2, None),
        "theta_digest": policy_digests["zone_mixture_policy"],
        "zone_floor_digest": policy_digests["zone_floor_policy"],
    }
    if "day_effect_policy" in policy_digests:
        parts["day_effect_digest"] = policy_digests["day_effect_policy"]
    parts["zone_alloc_digest"] = zone_alloc_digest or table_digest(zone_alloc, None, exclude=(ROUTING,))
    return parts


def combine(parts: dict) -> str:
    return sha256_hex("".join(parts.values()).encode("ascii"))


def zone_alloc_columns(zone_alloc_core: pd.DataFrame, lineage: dict) -> LineageColumns:
    """zone_alloc as column slices: S4's counts with site_count (the core), the run's lineage, and the
    routing hash still zero (set by :func:`egress` once the table's digest is known)."""
    return LineageColumns(zone_alloc_core, "zone_alloc", {**lineage, ROUTING: ZERO_HASH})


def egress(zone_alloc: LineageColumns, s2: pd.DataFrame, lineage: dict, policy_digests: dict) -> dict:
    """Digest zone_alloc a row group at a time, set its routing hash; -> zone_alloc_universe_hash document."""
    digest = chunked_table_digest(zone_alloc.rows, zone_alloc.names, zone_alloc.column, ROW_GROUP_ROWS,
                                  exclude=(ROUTING,), constants=zone_alloc.constants())
    parts = universe_components(s2, None, policy_digests, zone_alloc_digest=digest)
    routing = combine(parts)
    zone_alloc.values[ROUTING] = routing
    return {"manifest_fingerprint": lineage["manifest_fingerprint"], "parameter_hash": lineage["parameter_hash"],
            "seed": int(lineage["seed"]), **parts, "routing_universe_hash": routing, "version": "1.0.0",
            # published bytes (this document is a bundle member): the note names the digest as v1.0.0 published it,
            # whatever module holds table_digest now (engine.core.hashing), so a module move never changes a bundle
            "notes": "zone_alloc_digest = canonical row digest (engine.hashing.table_digest), routing_universe_hash "
                     "column excluded; composition order as listed"}
