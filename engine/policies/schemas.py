"""JSON schemas of the three 3A policies (closed objects) and the optional day-effect policy."""

from __future__ import annotations

_VERSION = {"type": "string", "minLength": 1}
# an alpha above this is not a concentration the engine can hold exactly (S2 share sums and the S3 dispersion
# transform lose their tolerances long before float overflow); the authoring law's sums are in [15, 160]
MAX_ALPHA = 1e6
_UNIT = {"type": "number", "minimum": 0, "maximum": 1}

S1_SMOOTHING = {
    "type": "object", "additionalProperties": False,
    "required": ["enabled", "zone_count_min", "zone_count_max", "zone_escalation_prob_min",
                 "zone_escalation_prob_max", "site_count_slope", "site_count_cap"],
    "properties": {
        "enabled": {"type": "boolean"},
        "zone_count_min": {"type": "integer", "minimum": 2, "maximum": 32},
        "zone_count_max": {"type": "integer", "minimum": 3, "maximum": 64},
        "zone_escalation_prob_min": _UNIT, "zone_escalation_prob_max": _UNIT,
        "site_count_slope": _UNIT, "site_count_cap": _UNIT, "notes": {"type": "string"},
    },
}

S3_DISPERSION = {
    "type": "object", "additionalProperties": False,
    "required": ["enabled", "concentration_scale", "alpha_temperature", "merchant_jitter",
                 "merchant_jitter_clip", "alpha_floor"],
    "properties": {
        "enabled": {"type": "boolean"},
        "concentration_scale": {"type": "number", "minimum": 0.05, "maximum": 1.5},
        "alpha_temperature": {"type": "number", "minimum": 0.5, "maximum": 1.5},
        "merchant_jitter": {"type": "number", "minimum": 0, "maximum": 0.5},
        "merchant_jitter_clip": {"type": "number", "minimum": 0, "maximum": 0.5},
        "alpha_floor": {"type": "number", "exclusiveMinimum": 0, "maximum": 0.01},
        # optional merchant-size law: concentration x (site_count / site_reference) ** site_elasticity
        "site_elasticity": {"type": "number", "minimum": 0, "maximum": 1.5},
        "site_reference": {"type": "integer", "minimum": 1, "maximum": 1000},
        "notes": {"type": "string"},
    },
}

S4_SAFEGUARDS = {
    "type": "object", "additionalProperties": False,
    "required": ["enabled", "site_threshold", "min_second_zone_share", "max_forced_zones", "stochastic_rounding"],
    "properties": {
        "enabled": {"type": "boolean"},
        "site_threshold": {"type": "integer", "minimum": 2, "maximum": 1000},
        "min_second_zone_share": {"type": "number", "minimum": 0, "maximum": 0.5},
        "max_forced_zones": {"type": "integer", "minimum": 0, "maximum": 8},
        "stochastic_rounding": {"type": "boolean"},
        "notes": {"type": "string"},
    },
}

ZONE_MIXTURE_POLICY = {
    "type": "object", "additionalProperties": False,
    "required": ["policy_id", "version", "theta_mix", "rules"],
    "properties": {
        "policy_id": {"const": "zone_mixture_policy_3A"},
        "version": _VERSION,
        "theta_mix": _UNIT,
        "rules": {
            "type": "array", "minItems": 1,
            "items": {
                "type": "object", "additionalProperties": False,
                "required": ["metric", "threshold", "decision_reason"],
                "properties": {
                    "metric": {"enum": ["site_count_lt", "zone_count_country_le", "site_count_ge",
                                        "zone_count_country_ge"]},
                    "threshold": {"type": "number"},
                    "decision_reason": {"enum": ["forced_monolithic", "below_min_sites", "legacy_default",
                                                 "forced_escalation", "default_escalation"]},
                    "bucket": {"type": "string"},
                },
            },
        },
        "s1_smoothing": S1_SMOOTHING,
        "s3_dispersion": S3_DISPERSION,
        "s4_safeguards": S4_SAFEGUARDS,
        "notes": {"type": "string"},
    },
}

COUNTRY_ZONE_ALPHAS = {
    "type": "object", "additionalProperties": False,
    "required": ["version", "countries"],
    "properties": {
        "version": _VERSION,
        "notes": {"type": "string"},
        "countries": {
            "type": "object", "minProperties": 1,
            "propertyNames": {"pattern": "^[A-Z]{2}$"},
            "additionalProperties": {
                "type": "object", "additionalProperties": False, "required": ["tzid_alphas"],
                "properties": {
                    "notes": {"type": "string"},
                    "tzid_alphas": {
                        "type": "array", "minItems": 1,
                        "items": {
                            "type": "object", "additionalProperties": False, "required": ["tzid", "alpha"],
                            "properties": {"tzid": {"type": "string", "minLength": 1},
                                           "alpha": {"type": "number", "exclusiveMinimum": 0,
                                                     "maximum": MAX_ALPHA}},
                        },
                    },
                },
            },
        },
    },
}

ZONE_FLOOR_POLICY = {
    "type": "object", "additionalProperties": False,
    "required": ["version", "floors"],
    "properties": {
        "version": _VERSION,
        "notes": {"type": "string"},
        "floors": {
            "type": "array",
            "items": {
                "type": "object", "additionalProperties": False,
                "required": ["tzid", "floor_value", "bump_threshold"],
                "properties": {"tzid": {"type": "string", "minLength": 1},
                               "floor_value": {"type": "number", "minimum": 0},
                               "bump_threshold": _UNIT, "notes": {"type": "string"}},
            },
        },
    },
}

DAY_EFFECT_POLICY = {"type": "object", "required": ["version"], "properties": {"version": _VERSION}}

SCHEMAS = {
    "zone_mixture_policy": ZONE_MIXTURE_POLICY,
    "country_zone_alphas": COUNTRY_ZONE_ALPHAS,
    "zone_floor_policy": ZONE_FLOOR_POLICY,
    "day_effect_policy": DAY_EFFECT_POLICY,
}
