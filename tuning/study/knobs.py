"""Knobs: named, bounded transforms from the authority PolicySet to a candidate PolicySet.

A candidate is real policy bytes with real digests; the knob values are only how it was made.
Only the policies a knob touches are re-serialised (``engine.policies.authoring.dump_yaml``, insertion order kept,
α rounded to 6 decimals and kept > 0), so an untouched policy keeps its authority bytes and digest
and the engine's rerun-matrix cache reuses the states that read it.

Families (the build plan's phases):

- P1.2 ``country_zone_alphas`` geometry, per country over its K >= 2 zones above the minimum α (a zone at 1e-6
  is one the evidence leaves empty, and stays so), their α sum kept: first ``temper_beta`` s' ∝ s^β (a geometric pull
  toward uniform: the order of the zones is kept and a small zone grows by at most s^(β-1), so flattening moves
  little mass onto a clock where almost nobody lives; gate 3A-F07), then ``blend_lambda`` s' = (1-λ)s + λ/K (an
  arithmetic pull: every zone gets λ/K, however few its people); then the mixed-dominance hub/tail family ``hub_cap``
  (no zone keeps a share above the cap; the excess is water-filled over the zones below the cap
  in proportion to s^``tail_gamma``: 0 spreads evenly, 1 proportionally, >1 favours the big tail).
- P1.3 ``zone_floor_policy``: ``floor_scale`` multiplies every floor_value; ``threshold_shift``
  adds to every bump_threshold, clipped to [0, 1], a gated one (> 0) to [ALPHA_MIN, 1]: no shift floors a zone at
  the minimum α, one its country's evidence leaves empty.
- P2 ``s3_dispersion`` block, P3 ``s4_safeguards`` block, P4 ``theta_mix``, the rule thresholds
  (``site_count_lt``, ``site_count_ge``, ``zone_count_country_ge``) and the ``s1_smoothing`` block.
  Setting any knob of a block enables the block (missing fields from the engine's "off" defaults).
  Dependent fields are lifted, not rejected: ``merchant_jitter_clip`` >= ``merchant_jitter``,
  ``zone_count_max`` > ``zone_count_min``, ``zone_escalation_prob_max`` >= ``..._min``,
  ``site_count_cap`` >= ``site_count_slope``.
"""

from __future__ import annotations

import pickle
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from engine import EngineError
from engine import PolicySet
from engine import S1_SMOOTHING_OFF, S3_DISPERSION_OFF, S4_SAFEGUARDS_OFF
from tuning.common.errors import E_KNOB_RANGE, E_KNOB_TARGET, E_KNOB_UNKNOWN

ALPHA_DECIMALS = 6
ALPHA_MIN = 10.0 ** -ALPHA_DECIMALS


@dataclass(frozen=True)
class Knob:
    name: str
    policy_id: str
    kind: str          # "float" | "int" | "bool"
    low: float | None  # inclusive domain (None for bool)
    high: float | None
    family: str
    neutral: object    # the value that leaves the policy's behaviour unchanged (None: no such value)
    doc: str


def _k(name, pid, kind, low, high, family, neutral, doc) -> Knob:
    return Knob(name, pid, kind, low, high, family, neutral, doc)


_ALPHAS, _FLOORS, _MIX = "country_zone_alphas", "zone_floor_policy", "zone_mixture_policy"
KNOBS: dict[str, Knob] = {k.name: k for k in [
    _k("temper_beta", _ALPHAS, "float", 0.0, 1.0, "alpha_geometry", 1.0, "geometric pull toward uniform: s^beta"),
    _k("blend_lambda", _ALPHAS, "float", 0.0, 1.0, "alpha_geometry", 0.0, "pull shares toward uniform 1/K"),
    _k("hub_cap", _ALPHAS, "float", 0.0, 1.0, "alpha_geometry", 1.0, "cap on any zone's share (>= 1/K)"),
    _k("tail_gamma", _ALPHAS, "float", 0.0, 3.0, "alpha_geometry", 1.0, "tail weight exponent for the hub excess"),
    _k("floor_scale", _FLOORS, "float", 0.0, 10.0, "floors", 1.0, "multiplies floor_value"),
    _k("threshold_shift", _FLOORS, "float", -1.0, 1.0, "floors", 0.0,
       "added to bump_threshold, clipped [0,1]; a gated one >= 1e-6"),
    _k("concentration_scale", _MIX, "float", 0.05, 1.5, "s3_dispersion", None, "S3 Dirichlet concentration"),
    _k("alpha_temperature", _MIX, "float", 0.5, 1.5, "s3_dispersion", None, "S3 alpha temperature"),
    _k("site_elasticity", _MIX, "float", 0.0, 1.5, "s3_dispersion", None,
       "S3 merchant-size law: concentration x (sites/site_reference)^elasticity"),
    _k("site_reference", _MIX, "int", 1, 1000, "s3_dispersion", None, "S3 merchant-size law reference site count"),
    _k("merchant_jitter", _MIX, "float", 0.0, 0.5, "s3_dispersion", None, "S3 per-merchant jitter"),
    _k("merchant_jitter_clip", _MIX, "float", 0.0, 0.5, "s3_dispersion", None, "S3 jitter clip (>= jitter)"),
    _k("alpha_floor", _MIX, "float", 1e-9, 0.01, "s3_dispersion", None, "S3 alpha floor"),
    _k("site_threshold", _MIX, "int", 2, 1000, "s4_safeguards", None, "S4 safeguard minimum sites"),
    _k("min_second_zone_share", _MIX, "float", 0.0, 0.5, "s4_safeguards", None, "S4 second-zone share floor"),
    _k("max_forced_zones", _MIX, "int", 0, 8, "s4_safeguards", None, "S4 forced zones cap"),
    _k("stochastic_rounding", _MIX, "bool", None, None, "s4_safeguards", None, "S4 seeded rounding"),
    _k("theta_mix", _MIX, "float", 0.10, 0.70, "s1_rules", None, "S1 default-escalation lottery"),
    _k("site_count_lt", _MIX, "int", 2, 10, "s1_rules", None, "threshold of the first site_count_lt rule"),
    _k("site_count_ge", _MIX, "int", 20, 200, "s1_rules", None, "threshold of the first site_count_ge rule"),
    _k("zone_count_country_ge", _MIX, "int", 3, 12, "s1_rules", None,
       "threshold of the first zone_count_country_ge rule"),
    _k("zone_count_min", _MIX, "int", 2, 32, "s1_smoothing", None, "S1 smoothing band start"),
    _k("zone_count_max", _MIX, "int", 3, 64, "s1_smoothing", None, "S1 smoothing band end (> min)"),
    _k("zone_escalation_prob_min", _MIX, "float", 0.0, 1.0, "s1_smoothing", None, "S1 smoothing p at band start"),
    _k("zone_escalation_prob_max", _MIX, "float", 0.0, 1.0, "s1_smoothing", None, "S1 smoothing p at band end"),
    _k("site_count_slope", _MIX, "float", 0.0, 1.0, "s1_smoothing", None, "S1 smoothing site slope"),
    _k("site_count_cap", _MIX, "float", 0.0, 1.0, "s1_smoothing", None, "S1 smoothing site cap (>= slope)"),
]}

BLOCK_DEFAULTS = {"s1_smoothing": S1_SMOOTHING_OFF, "s3_dispersion": S3_DISPERSION_OFF,
                  "s4_safeguards": S4_SAFEGUARDS_OFF}
RULE_KNOBS = ("site_count_lt", "site_count_ge", "zone_count_country_ge")


def knob(name: str) -> Knob:
    try:
        return KNOBS[name]
    except KeyError:
        raise EngineError(E_KNOB_UNKNOWN, f"unknown knob {name!r} (known: {', '.join(sorted(KNOBS))})") from None


def check_value(name: str, value: object) -> object:
    """The value coerced to the knob's kind, or an E3A_TUN_001 error when outside its domain."""
    k = knob(name)
    if k.kind == "bool":
        if isinstance(value, bool) or value in (0, 1):
            return bool(value)
        raise EngineError(E_KNOB_RANGE, f"knob {name}={value!r} is not a boolean")
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise EngineError(E_KNOB_RANGE, f"knob {name}={value!r} is not a number")
    v = float(value)
    if not math.isfinite(v) or v < k.low or v > k.high:
        raise EngineError(E_KNOB_RANGE, f"knob {name}={value!r} outside [{k.low}, {k.high}]")
    if k.kind == "int":
        if v != int(v):
            raise EngineError(E_KNOB_RANGE, f"knob {name}={value!r} is not an integer")
        return int(v)
    return v


# --------------------------------------------------------------------------- transforms

def reshape_shares(shares: np.ndarray, blend_lambda: float = 0.0, hub_cap: float = 1.0,
                   tail_gamma: float = 1.0, temper_beta: float = 1.0) -> np.ndarray:
    """One country's shares through the P1.2 geometry (sum stays 1)."""
    s = np.asarray(shares, dtype=float)
    k = s.size
    if k < 2:
        return s.copy()
    if temper_beta != 1.0:
        s = np.power(s, temper_beta)
        s = s / s.sum()
    s = (1.0 - blend_lambda) * s + blend_lambda / k
    cap = max(hub_cap, 1.0 / k)
    for _ in range(k):  # water-filling: each pass pins at least one more zone at the cap
        over = s > cap
        if not over.any():
            break
        excess = float((s[over] - cap).sum())
        s[over] = cap
        free = s < cap
        if not free.any():
            break
        weights = np.power(np.maximum(s[free], 1e-300), tail_gamma)
        s[free] += excess * weights / weights.sum()
    return s / s.sum()


def _alphas(doc: dict, v: Mapping[str, object]) -> None:
    lam = float(v.get("blend_lambda", 0.0))
    cap = float(v.get("hub_cap", 1.0))
    gamma = float(v.get("tail_gamma", 1.0))
    beta = float(v.get("temper_beta", 1.0))
    for block in doc["countries"].values():
        # a zone at the minimum alpha is one its country's evidence leaves empty (engine.policies.authoring): the
        # geometry reshapes the populated zones among themselves and never pulls outlets into an empty one
        entries = [e for e in block["tzid_alphas"] if float(e["alpha"]) > ALPHA_MIN]
        if len(entries) < 2:
            continue
        alpha = np.array([float(e["alpha"]) for e in entries])
        total = alpha.sum()
        new = total * reshape_shares(alpha / total, lam, cap, gamma, beta)
        for entry, a in zip(entries, new):
            entry["alpha"] = max(round(float(a), ALPHA_DECIMALS), ALPHA_MIN)


def _floors(doc: dict, v: Mapping[str, object]) -> None:
    scale = float(v.get("floor_scale", 1.0))
    shift = float(v.get("threshold_shift", 0.0))
    for floor in doc["floors"]:
        floor["floor_value"] = round(float(floor["floor_value"]) * scale, ALPHA_DECIMALS)
        gate = float(floor["bump_threshold"])   # a gated floor stays gated above the empty mark (P1.2's law too)
        floor["bump_threshold"] = round(min(1.0, max(ALPHA_MIN if gate > 0 else 0.0, gate + shift)), ALPHA_DECIMALS)


def _block(doc: dict, name: str, v: Mapping[str, object]) -> None:
    fields = [k.name for k in KNOBS.values() if k.family == name and k.name in v]
    if not fields:
        return
    block = dict(BLOCK_DEFAULTS[name])
    block.update(doc.get(name) or {})
    block["enabled"] = True
    for f in fields:
        block[f] = v[f]
    if name == "s3_dispersion":
        block["merchant_jitter_clip"] = max(block["merchant_jitter_clip"], block["merchant_jitter"])
    if name == "s1_smoothing":
        block["zone_count_max"] = max(block["zone_count_max"], block["zone_count_min"] + 1)
        block["zone_escalation_prob_max"] = max(block["zone_escalation_prob_max"], block["zone_escalation_prob_min"])
        block["site_count_cap"] = max(block["site_count_cap"], block["site_count_slope"])
    doc[name] = block


def _mixture(doc: dict, v: Mapping[str, object]) -> None:
    if "theta_mix" in v:
        doc["theta_mix"] = v["theta_mix"]
    for metric in RULE_KNOBS:
        if metric not in v:
            continue
        rule = next((r for r in doc["rules"] if r["metric"] == metric), None)
        if rule is None:
            raise EngineError(E_KNOB_TARGET, f"knob {metric}: zone_mixture_policy has no {metric} rule")
        rule["threshold"] = v[metric]
    for name in ("s1_smoothing", "s3_dispersion", "s4_safeguards"):
        _block(doc, name, v)


TRANSFORMS: dict[str, Callable[[dict, Mapping[str, object]], None]] = {
    _ALPHAS: _alphas, _FLOORS: _floors, _MIX: _mixture,
}


def _version(base: str, values: Mapping[str, object]) -> str:
    tag = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:8]
    return f"{base.split('+')[0]}+tuned.{tag}"


def apply_knobs(base: PolicySet, values: Mapping[str, object]) -> PolicySet:
    """The candidate PolicySet for these knob values (real bytes; untouched policies keep theirs)."""
    checked = {name: check_value(name, value) for name, value in values.items()}
    by_policy: dict[str, dict[str, object]] = {}
    for name, value in checked.items():
        by_policy.setdefault(KNOBS[name].policy_id, {})[name] = value
    docs: dict[str, dict] = {}
    for pid in sorted(by_policy):
        doc = pickle.loads(pickle.dumps(base.doc(pid), protocol=pickle.HIGHEST_PROTOCOL))  # a fast deep copy
        TRANSFORMS[pid](doc, by_policy[pid])
        doc["version"] = _version(str(doc["version"]), by_policy[pid])
        docs[pid] = doc
    return base.with_documents(**docs) if docs else base
