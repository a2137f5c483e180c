"""Column orders of the published tables and the constant lineage columns attached to them.

States compute lineage-free *core* tables (so the rerun-matrix cache can reuse them across
candidates); the chain attaches the run's lineage here, cheaply, before S5 digests anything.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

COLUMNS = {
    "s1": ["seed", "manifest_fingerprint", "merchant_id", "legal_country_iso", "site_count", "zone_count_country",
           "is_escalated", "decision_reason", "mixture_policy_id", "mixture_policy_version", "theta_digest",
           "eligible_for_escalation", "dominant_zone_share_bucket", "notes"],
    "s2": ["parameter_hash", "country_iso", "tzid", "alpha_raw", "alpha_effective", "alpha_sum_country",
           "prior_pack_id", "prior_pack_version", "floor_policy_id", "floor_policy_version", "floor_applied",
           "bump_applied", "share_effective", "notes"],
    "s3": ["seed", "manifest_fingerprint", "merchant_id", "legal_country_iso", "tzid", "share_drawn",
           "share_sum_country", "alpha_sum_country", "prior_pack_id", "prior_pack_version", "floor_policy_id",
           "floor_policy_version", "rng_module", "rng_substream_label", "rng_stream_id", "rng_event_id", "notes"],
    "s4": ["seed", "manifest_fingerprint", "merchant_id", "legal_country_iso", "tzid", "zone_site_count",
           "zone_site_count_sum", "share_sum_country", "fractional_target", "residual_rank", "prior_pack_id",
           "prior_pack_version", "floor_policy_id", "floor_policy_version", "alpha_sum_country", "notes"],
    "zone_alloc": ["seed", "manifest_fingerprint", "merchant_id", "legal_country_iso", "tzid", "zone_site_count",
                   "zone_site_count_sum", "site_count", "prior_pack_id", "prior_pack_version", "floor_policy_id",
                   "floor_policy_version", "mixture_policy_id", "mixture_policy_version", "day_effect_policy_id",
                   "day_effect_policy_version", "routing_universe_hash", "alpha_sum_country", "notes"],
}


def lineage_values(identity: dict, policies) -> dict:
    """The constant columns of a run, from its identity and its sealed policy set."""
    has_day = "day_effect_policy" in policies.raw
    return {
        "seed": identity["seed"],
        "manifest_fingerprint": identity["manifest_fingerprint"],
        "parameter_hash": identity["parameter_hash"],
        "mixture_policy_id": policies.doc("zone_mixture_policy")["policy_id"],
        "mixture_policy_version": policies.version("zone_mixture_policy"),
        "theta_digest": policies.digests["zone_mixture_policy"],
        "prior_pack_id": "country_zone_alphas",
        "prior_pack_version": policies.version("country_zone_alphas"),
        "floor_policy_id": "zone_floor_policy",
        "floor_policy_version": policies.version("zone_floor_policy"),
        "day_effect_policy_id": "day_effect_policy" if has_day else None,
        "day_effect_policy_version": policies.version("day_effect_policy") if has_day else None,
        "rng_module": "3A.S3",
        "rng_substream_label": "zone_dirichlet",
        "rng_event_id": None,
        "notes": None,
    }


_STR = pd.StringDtype("pyarrow", na_value=np.nan)


def constant_strings(value: str | None, n: int) -> pd.Series:
    """A constant string column built in Arrow directly (no per-row Python objects)."""
    kind = pa.large_string()  # pandas' own storage for its string dtype: no cast on the way in
    if value is None:
        arr = pa.nulls(n, kind)
    else:  # offsets and data laid out directly (pa.repeat appends element by element)
        raw = value.encode("utf-8")
        offsets = np.arange(n + 1, dtype=np.int64) * len(raw)
        arr = pa.Array.from_buffers(kind, n, [None, pa.py_buffer(offsets), pa.py_buffer(raw * n)])
    return pd.Series(arr.to_pandas(types_mapper={kind: _STR}.get))


class LineageColumns:
    """A published table as column slices: core columns as stored, ``extra`` arrays, the seed and the
    constant lineage strings made on demand. ``frame(a, b)`` is rows [a, b) of the published table, so a
    large table can be written and digested a row group at a time."""

    def __init__(self, core: pd.DataFrame, table: str, values: dict, extra: dict | None = None) -> None:
        self.core, self.table, self.values, self.extra = core, table, values, extra or {}
        self.rows, self.names = len(core), COLUMNS[table]

    def column(self, col: str, a: int, b: int) -> pd.Series:
        if col in self.extra:
            return pd.Series(self.extra[col][a:b], copy=False)
        if col in self.core.columns:
            return self.core[col].iloc[a:b]
        if col == "seed":
            return pd.Series(np.full(b - a, self.values["seed"], dtype=np.uint64), copy=False)
        return constant_strings(self.values[col], b - a)

    def constants(self) -> dict[str, str | None]:
        """The constant string columns (every row the same lineage value, or null)."""
        return {c: self.values[c] for c in self.names
                if c not in self.extra and c not in self.core.columns and c != "seed"}

    def frame(self, a: int = 0, b: int | None = None) -> pd.DataFrame:
        b = self.rows if b is None else b
        data = {col: self.column(col, a, b).array for col in self.names}  # as stored: no numpy-object round trip
        return pd.DataFrame(data, columns=self.names, copy=False)


def with_lineage(core: pd.DataFrame, table: str, values: dict, extra: dict | None = None) -> pd.DataFrame:
    """Attach constant columns and return the table in its published column order."""
    return LineageColumns(core, table, values, extra).frame()
