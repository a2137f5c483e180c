"""S0: seal the world inputs and the policy set; derive the run identity (DESIGN §8).

There is no upstream segment to re-verify: S0 seals what the run stands on (zone universe,
population table, outlet catalogue, package versions) and the three (or four) policies.
No wall-clock value enters the receipt, so identical inputs give identical bytes.
"""

from __future__ import annotations

from engine.core.hashing import manifest_fingerprint, parameter_hash, run_id

SCHEMA_REFS = {
    "country_zone_alphas": "engine/policies/schemas.py#COUNTRY_ZONE_ALPHAS",
    "zone_floor_policy": "engine/policies/schemas.py#ZONE_FLOOR_POLICY",
    "zone_mixture_policy": "engine/policies/schemas.py#ZONE_MIXTURE_POLICY",
    "day_effect_policy": "engine/policies/schemas.py#DAY_EFFECT_POLICY",
}


def seal_world(world_parts: dict[str, str], versions: dict) -> list[dict]:
    """Inventory rows of the sealed world inputs (``world_parts``: part id -> hex digest)."""
    return [{"owner_segment": "world", "artefact_kind": "dataset", "logical_id": f"world_{part}",
             "path": f"world/{part}", "schema_ref": "engine/world", "sha256_hex": digest,
             "role": "upstream", "notes": f"versions={','.join(f'{k}={v}' for k, v in sorted(versions.items()))}"}
            for part, digest in sorted(world_parts.items())]


def seal(seed: int, world_digest: str, world_rows: list[dict], policy_digests: dict[str, str],
         policy_versions: dict[str, str], engine_version: str) -> tuple[dict, dict, list[dict]]:
    """-> (identity, gate receipt, sealed inputs). Pure: same inputs, same bytes."""
    p_hash = parameter_hash(policy_digests)
    fingerprint = manifest_fingerprint(p_hash, world_digest, engine_version)
    identity = {"seed": int(seed), "parameter_hash": p_hash, "manifest_fingerprint": fingerprint,
                "world_digest": world_digest, "run_id": run_id(fingerprint, seed),
                "engine_version": engine_version, "policy_digests": dict(sorted(policy_digests.items()))}
    policy_rows = [{"owner_segment": "3A", "artefact_kind": "policy", "logical_id": pid,
                    "path": f"policies/{pid}.yaml", "schema_ref": SCHEMA_REFS[pid], "sha256_hex": digest,
                    "role": "policy", "notes": f"version={policy_versions[pid]}"}
                   for pid, digest in sorted(policy_digests.items())]
    sealed = sorted(world_rows + policy_rows,
                    key=lambda r: (r["owner_segment"], r["artefact_kind"], r["logical_id"], r["path"]))
    for row in sealed:
        row["manifest_fingerprint"] = fingerprint
    receipt = {
        "version": "1.0.0", "manifest_fingerprint": fingerprint, "parameter_hash": p_hash, "seed": int(seed),
        "world_digest": world_digest, "engine_version": engine_version,
        "upstream_gates": {"world": {"status": "PASS", "sha256_hex": world_digest}},
        "sealed_policy_set": [{k: r[k] for k in ("logical_id", "owner_segment", "role", "sha256_hex", "schema_ref",
                                                  "path", "notes")} for r in policy_rows],
    }
    return identity, receipt, sealed
