"""S7: bundle index over every published member and the ``_passed.flag`` (spec S6-S7 §7-§10).

The members are the exact bytes the run store writes, so the flag is identical in memory and
on disk; the verifier recomputes each member digest from the files.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.core.hashing import sha256_hex


@dataclass(frozen=True)
class Member:
    logical_id: str
    path: str          # relative to the run directory
    role: str
    schema_ref: str
    data: bytes


def index_document(identity: dict, members: list[Member], s6_receipt_digest: str) -> dict:
    ordered = sorted(members, key=lambda m: m.logical_id)
    ids = [m.logical_id for m in ordered]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate bundle member")
    return {
        "manifest_fingerprint": identity["manifest_fingerprint"],
        "parameter_hash": identity["parameter_hash"],
        "s6_receipt_digest": s6_receipt_digest,
        "members": [{"logical_id": m.logical_id, "path": m.path, "schema_ref": m.schema_ref,
                     "sha256_hex": sha256_hex(m.data), "role": m.role, "size_bytes": len(m.data)}
                    for m in ordered],
    }


def bundle_digest(index: dict) -> str:
    """SHA-256 over the members' hex digests (ASCII) in members[] order, no separators."""
    return sha256_hex("".join(m["sha256_hex"] for m in index["members"]).encode("ascii"))


def passed_flag(index: dict) -> str:
    return f"sha256_hex = {bundle_digest(index)}\n"
