"""PolicySet: the raw bytes of each sealed policy, their parsed documents and their digests.

Candidates are real policy files: a PolicySet is built from bytes (a directory or a mapping),
and its digests are SHA-256 of those bytes. ``parameter_hash`` follows DESIGN §8.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import jsonschema

from engine.publish.atomic import atomic_write
from engine.core.errors import E_POLICY_MISSING, E_POLICY_SANITY, E_POLICY_SCHEMA, E_POLICY_YAML, EngineError
from engine.core.hashing import canonical_json, parameter_hash, sha256_hex
from engine.policies.schemas import MAX_ALPHA, SCHEMAS
from engine.core.strict import parse_yaml, read_bytes, require_finite

POLICY_IDS = ("country_zone_alphas", "zone_floor_policy", "zone_mixture_policy")
OPTIONAL_POLICY_IDS = ("day_effect_policy",)
_VALIDATORS = {pid: jsonschema.Draft202012Validator(schema) for pid, schema in SCHEMAS.items()}
PLACEHOLDERS = {"", "tbd", "todo", "null", "unknown", "none"}

S1_SMOOTHING_OFF = {"enabled": False, "zone_count_min": 5, "zone_count_max": 16, "zone_escalation_prob_min": 0.08,
                    "zone_escalation_prob_max": 0.5, "site_count_slope": 0.2, "site_count_cap": 0.22}
S3_DISPERSION_OFF = {"enabled": False, "concentration_scale": 1.0, "alpha_temperature": 1.0,
                     "merchant_jitter": 0.0, "merchant_jitter_clip": 0.0, "alpha_floor": 1e-6}
S4_SAFEGUARDS_OFF = {"enabled": False, "site_threshold": 10, "min_second_zone_share": 0.0, "max_forced_zones": 0,
                     "stochastic_rounding": False}


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x


def _valid_alphas(doc) -> bool:
    """Exactly the COUNTRY_ZONE_ALPHAS schema, checked without jsonschema (it runs once per P1.2
    candidate); on False the schema validator runs and produces the message."""
    if not isinstance(doc, dict) or set(doc) - {"version", "countries", "notes"} or "countries" not in doc:
        return False
    if not isinstance(doc.get("version"), str) or not doc["version"] or not isinstance(doc.get("notes", ""), str):
        return False
    countries = doc["countries"]
    if not isinstance(countries, dict) or not countries:
        return False
    for iso, block in countries.items():
        if not (isinstance(iso, str) and len(iso) == 2 and iso.isascii() and iso.isupper() and iso.isalpha()):
            return False
        if not isinstance(block, dict) or set(block) - {"tzid_alphas", "notes"} or "tzid_alphas" not in block:
            return False
        entries = block["tzid_alphas"]
        if not isinstance(entries, list) or not entries or not isinstance(block.get("notes", ""), str):
            return False
        for e in entries:
            if not isinstance(e, dict) or set(e) != {"tzid", "alpha"}:
                return False
            if not isinstance(e["tzid"], str) or not e["tzid"] or not _is_num(e["alpha"]) or \
                    not 0 < e["alpha"] <= MAX_ALPHA:
                return False
    return True


def _valid_floors(doc) -> bool:
    """Exactly the ZONE_FLOOR_POLICY schema (see _valid_alphas)."""
    if not isinstance(doc, dict) or set(doc) - {"version", "floors", "notes"} or "floors" not in doc:
        return False
    if not isinstance(doc.get("version"), str) or not doc["version"] or not isinstance(doc.get("notes", ""), str):
        return False
    if not isinstance(doc["floors"], list):
        return False
    for f in doc["floors"]:
        if not isinstance(f, dict) or not {"tzid", "floor_value", "bump_threshold"} <= set(f) or \
                set(f) - {"tzid", "floor_value", "bump_threshold", "notes"}:
            return False
        if not isinstance(f["tzid"], str) or not f["tzid"] or not isinstance(f.get("notes", ""), str):
            return False
        if not (_is_num(f["floor_value"]) and f["floor_value"] >= 0 and _is_num(f["bump_threshold"])
                and 0 <= f["bump_threshold"] <= 1):
            return False
    return True


_FAST_VALID = {"country_zone_alphas": _valid_alphas, "zone_floor_policy": _valid_floors}


def parse_policy(policy_id: str, raw: bytes, source: str) -> dict:
    """YAML -> document, schema-checked, with the sanity checks beyond the schema."""
    if policy_id in POLICY_IDS and raw and not raw.endswith(b"\n"):
        # every writer ends a policy with a newline; a file cut mid-line can still parse and pass the
        # schema ("alpha: 16.97" from "alpha: 16.972354"), so a missing final newline is a truncation
        raise EngineError(E_POLICY_YAML, f"{source}: truncated (the file does not end with a newline)")
    return validate_document(policy_id, parse_yaml(raw, source, E_POLICY_YAML), source)


def validate_document(policy_id: str, doc: object, source: str) -> dict:
    """Schema and sanity checks of a parsed policy document; returns it unchanged."""
    fast = _FAST_VALID.get(policy_id)
    error = None if fast is not None and fast(doc) else \
        jsonschema.exceptions.best_match(_VALIDATORS[policy_id].iter_errors(doc))
    if error is not None:
        exc = error
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise EngineError(E_POLICY_SCHEMA, f"{source}: {where}: {exc.message}") from None
    require_finite(doc, source, E_POLICY_SCHEMA)  # NaN slips through every schema minimum/maximum
    version = str(doc.get("version", ""))
    if version.strip().lower() in PLACEHOLDERS or "{" in version or "}" in version:
        raise EngineError(E_POLICY_SCHEMA, f"{source}: version {version!r} is a placeholder")
    if policy_id == "zone_mixture_policy":
        _check_mixture(doc, source)
    if policy_id == "country_zone_alphas":
        for iso, block in doc["countries"].items():
            if not all(math.isfinite(e["alpha"]) for e in block["tzid_alphas"]):
                raise EngineError(E_POLICY_SCHEMA, f"{source}: country {iso} has a non-finite alpha")
            tzids = [e["tzid"] for e in block["tzid_alphas"]]
            if len(set(tzids)) != len(tzids):
                raise EngineError(E_POLICY_SCHEMA, f"{source}: country {iso} lists a tzid twice")
    if policy_id == "zone_floor_policy":
        if not all(math.isfinite(f["floor_value"]) and math.isfinite(f["bump_threshold"]) for f in doc["floors"]):
            raise EngineError(E_POLICY_SCHEMA, f"{source}: a floor_value or bump_threshold is not finite")
        tzids = [f["tzid"] for f in doc["floors"]]
        if len(set(tzids)) != len(tzids):
            raise EngineError(E_POLICY_SCHEMA, f"{source}: floors list a tzid twice")
    return doc


def _check_mixture(doc: dict, source: str) -> None:
    def fail(msg: str) -> None:
        raise EngineError(E_POLICY_SANITY, f"{source}: {msg}")

    if not 0.10 <= doc["theta_mix"] <= 0.70:
        fail(f"theta_mix {doc['theta_mix']} outside [0.10, 0.70]")
    rules = doc["rules"]
    if len(rules) < 3:
        fail("the rule ladder needs at least 3 rules")
    by_metric: dict[str, list[dict]] = {}
    for rule in rules:
        by_metric.setdefault(rule["metric"], []).append(rule)
    if not any(2 <= r["threshold"] <= 10 for r in by_metric.get("site_count_lt", [])):
        fail("a site_count_lt rule with threshold in [2, 10] is required")
    if not any(r["threshold"] == 1 for r in by_metric.get("zone_count_country_le", [])):
        fail("a zone_count_country_le rule with threshold 1 is required")
    for r in by_metric.get("zone_count_country_ge", []):
        if not 3 <= r["threshold"] <= 12:
            fail(f"zone_count_country_ge threshold {r['threshold']} outside [3, 12]")
    for r in by_metric.get("site_count_ge", []):
        if not 20 <= r["threshold"] <= 200:
            fail(f"site_count_ge threshold {r['threshold']} outside [20, 200]")
    if not any(r["decision_reason"] == "forced_escalation" and r["metric"] in ("site_count_ge", "zone_count_country_ge")
               for r in rules):
        fail("at least one forced_escalation rule on site_count_ge or zone_count_country_ge is required")
    sm = doc.get("s1_smoothing")
    if sm:
        if sm["zone_count_max"] <= sm["zone_count_min"]:
            fail("s1_smoothing.zone_count_max must exceed zone_count_min")
        if sm["zone_escalation_prob_max"] < sm["zone_escalation_prob_min"]:
            fail("s1_smoothing.zone_escalation_prob_max must be >= zone_escalation_prob_min")
        if sm["site_count_cap"] < sm["site_count_slope"]:
            fail("s1_smoothing.site_count_cap must be >= site_count_slope")
    disp = doc.get("s3_dispersion")
    if disp and disp["merchant_jitter_clip"] + 1e-12 < disp["merchant_jitter"]:
        fail("s3_dispersion.merchant_jitter_clip must be >= merchant_jitter")


_PARSED: OrderedDict = OrderedDict()
_PARSED_MAX = 64


def parsed_policy(policy_id: str, raw: bytes, source: str) -> dict:
    """Parse once per (policy id, bytes digest): a candidate that keeps a policy's bytes reuses its
    parsed document. Documents are shared and read-only; copy before editing."""
    key = (policy_id, sha256_hex(raw))
    doc = _PARSED.get(key)
    if doc is None:
        doc = parse_policy(policy_id, raw, source)
        _PARSED[key] = doc
        while len(_PARSED) > _PARSED_MAX:
            _PARSED.popitem(last=False)
    else:
        _PARSED.move_to_end(key)
    return doc


@dataclass(frozen=True)
class PolicySet:
    """Raw bytes per policy id (three required, day_effect_policy optional)."""

    raw: Mapping[str, bytes]
    source: str = "<memory>"

    def __post_init__(self) -> None:
        missing = [p for p in POLICY_IDS if p not in self.raw]
        if missing:
            raise EngineError(E_POLICY_MISSING, f"{self.source}: policy set lacks {', '.join(missing)}")
        unknown = sorted(set(self.raw) - set(POLICY_IDS) - set(OPTIONAL_POLICY_IDS))
        if unknown:
            raise EngineError(E_POLICY_MISSING, f"{self.source}: unknown policy id {unknown[0]!r}")
        # parse eagerly: a bad file never reaches a state
        docs = {pid: parsed_policy(pid, data, f"{self.source}/{pid}.yaml") for pid, data in self.raw.items()}
        object.__setattr__(self, "_docs", docs)
        object.__setattr__(self, "_section_digests", {})   # (policy id, sections) -> digest: the bytes never change

    @classmethod
    def from_dir(cls, directory: str | Path) -> "PolicySet":
        d = Path(directory)
        if not d.is_dir():
            raise EngineError(E_POLICY_MISSING, f"{d}: policy directory not found")
        raw = {}
        for pid in POLICY_IDS + OPTIONAL_POLICY_IDS:
            path = d / f"{pid}.yaml"
            if path.exists():
                raw[pid] = read_bytes(path, E_POLICY_MISSING)
            elif pid in POLICY_IDS:
                raise EngineError(E_POLICY_MISSING, f"{path}: required policy file not found")
        return cls(raw, str(d))

    def with_documents(self, **docs: dict) -> "PolicySet":
        """A candidate from edited documents: each is validated, serialised by the engine's one YAML
        writer (``dump_yaml``, whose output loads back to the same document) and registered so the
        new bytes are not parsed again."""
        from engine.policies.alpha_writer import writer_for
        from engine.policies.authoring import dump_yaml

        files = {}
        for pid, doc in docs.items():
            source = f"{self.source}+candidate/{pid}.yaml"
            if pid not in SCHEMAS:
                raise EngineError(E_POLICY_MISSING, f"{source}: unknown policy id")
            validate_document(pid, doc, source)
            files[pid] = writer_for(doc).dump(doc) if pid == "country_zone_alphas" else dump_yaml(doc)
            _PARSED[(pid, sha256_hex(files[pid]))] = doc
        return self.replace(**files)

    def replace(self, **files: bytes) -> "PolicySet":
        merged = dict(self.raw)
        merged.update(files)
        return PolicySet(merged, f"{self.source}+candidate")

    def doc(self, policy_id: str) -> dict:
        return self._docs[policy_id]

    @functools.cached_property
    def digests(self) -> dict[str, str]:
        return {pid: sha256_hex(data) for pid, data in sorted(self.raw.items())}

    @functools.cached_property
    def parameter_hash(self) -> str:
        return parameter_hash(self.digests)

    def version(self, policy_id: str) -> str:
        return str(self.doc(policy_id)["version"])

    def section(self, policy_id: str, key: str, default: dict | None = None) -> dict:
        """A block of a policy, with the disabled default where the policy omits it."""
        value = self.doc(policy_id).get(key)
        return dict(value) if value is not None else dict(default or {})

    def section_digest(self, policy_id: str, *keys: str) -> str:
        """Digest of just the parts of a policy a state reads (the cache key of the rerun matrix)."""
        memo = self._section_digests
        if (policy_id, keys) not in memo:   # every chain of a candidate asks again, once per state and seed
            doc = self.doc(policy_id)
            memo[(policy_id, keys)] = sha256_hex(canonical_json({k: doc.get(k) for k in keys}))
        return memo[(policy_id, keys)]

    def write(self, directory: str | Path) -> None:
        """Write each policy's exact bytes, atomically per file."""
        for pid, data in self.raw.items():
            atomic_write(Path(directory) / f"{pid}.yaml", data)

    def __hash__(self) -> int:
        return hash(self.parameter_hash)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PolicySet) and other.parameter_hash == self.parameter_hash
