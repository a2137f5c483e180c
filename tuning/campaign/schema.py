"""The campaign file's schema: every key a campaign or a step may hold, its type and range.

A key the campaign does not read (a typo such as ``promote_iff``) is refused, not dropped: a dropped rule would
change what the campaign promotes without a word. A budget or a seed count of 0 is refused too (a sweep step's
``trials: 0`` would otherwise fall back to the study's own budget, and ``validate: {seeds: 0}`` would re-score
on no seed at all). Checked by :func:`tuning.campaign.__main__.load_campaign`; a problem is one
``E3A_TUN_060_CAMPAIGN`` line naming the file and the field (``steps[3].sweep.trials``)."""

from __future__ import annotations

import jsonschema

from engine import non_finite_path
from tuning.authority.freeze import VERDICT_GRADE
from tuning.authority.ladder import PHASES
from tuning.campaign.facts import reason_problem
from tuning.campaign.rules import SELECT_RULES
from tuning.common.limits import MAX_SEEDS, MAX_TRIALS
from tuning.study.spec import field_path

KINDS = ("author", "baseline", "runtime", "sweep", "frontier", "review", "certify", "freeze")
FREEZE_TARGETS = tuple(VERDICT_GRADE)   # the grades a freeze can aim at

_SEED = {"type": "integer", "minimum": 0, "maximum": 2**64 - 1}
_COUNT = {"type": "integer", "minimum": 1, "maximum": MAX_SEEDS}   # seeds, candidates, repeats: each one runs
_NAME = {"type": "string", "minLength": 1}
_VALIDATE = {"type": "object", "additionalProperties": False,
             "properties": {"seeds": _COUNT, "top": _COUNT,
                            # a world of at most max_pairs (merchant, country) pairs is validated on more seeds and
                            # candidates (tuning.campaign.steps.Campaign.validation)
                            "small_world": {"type": "object", "additionalProperties": False,
                                            "required": ["max_pairs", "seeds", "top"],
                                            "properties": {"max_pairs": {"type": "integer", "minimum": 1},
                                                           "seeds": _COUNT, "top": _COUNT}}}}
_STUDY_STEP = {"type": "object", "additionalProperties": False, "required": ["study"],
               "properties": {"study": _NAME, "trials": {"type": "integer", "minimum": 1, "maximum": MAX_TRIALS},
                              "name": _NAME}}


def _object(properties: dict, required: tuple = ()) -> dict:
    return {"type": "object", "additionalProperties": False, "properties": properties, "required": list(required)}


STEP_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "phase": {"enum": list(PHASES)},   # a step is recorded under its phase: the plan's, as ladder record takes
        "author": {"const": True},
        "baseline": _object({"seed": _SEED}),
        "runtime": _object({"seed": _SEED, "repeats": _COUNT}),
        "sweep": _STUDY_STEP,
        "frontier": _STUDY_STEP,
        "review": _object({"decision": _NAME, "reason": {"type": "string"}}, ("decision", "reason")),
        "certify": _object({"seeds": {"type": "array", "items": _SEED, "minItems": 1, "maxItems": MAX_SEEDS},
                            "holdout": {"type": "integer", "minimum": 0, "maximum": MAX_SEEDS}}),
        "freeze": {"anyOf": [{"const": True}, _object({"target": {"enum": list(FREEZE_TARGETS)}})]},
        "select": {"enum": list(SELECT_RULES)},
        "promote_if": _object({"min_J": {"type": "number"}, "targets": {"type": "boolean"}}),
        "validate": {"anyOf": [{"const": False}, _VALIDATE]},
        "decision": _NAME, "else": _NAME, "ladder_phase": _NAME, "reason": {"type": "string"},
        "reachable": _NAME, "unreachable": _NAME, "narrowed": _NAME,
        "narrow": {"type": "array", "items": _NAME, "minItems": 1},
    },
    "allOf": [
        {"if": {"required": ["sweep"]}, "then": {"required": ["decision", "else"]}},
        {"if": {"required": ["frontier"]}, "then": {"required": ["reachable", "unreachable"]}},
    ],
}

CAMPAIGN_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["steps"],
    "properties": {
        "campaign": _NAME,
        "world": _NAME,
        "validate": _VALIDATE,
        "steps": {"type": "array", "minItems": 1, "items": STEP_SCHEMA},
    },
}

_VALIDATOR = jsonschema.Draft202012Validator(CAMPAIGN_SCHEMA)


def campaign_problem(doc) -> str | None:
    """The first problem of a parsed campaign file as ``field: message``, or None."""
    at = non_finite_path(doc)
    if at is not None:
        return f"{at}: number is not finite (NaN, inf, or an integer too large for a float)"
    if isinstance(doc, dict) and isinstance(doc.get("steps"), list):
        for i, step in enumerate(doc["steps"]):   # the kind first: it names what the step is missing
            found = [k for k in KINDS if isinstance(step, dict) and k in step]
            if len(found) != 1:
                return f"steps[{i}]: needs exactly one of {', '.join(KINDS)}"
            if found[0] != "author" and not step.get("phase"):
                return f"steps[{i}]: needs a phase"
            why = reason_problem(step["reason"]) if isinstance(step.get("reason"), str) else None
            if why:   # filled in only when the step runs, after the steps before it changed the authority
                return f"steps[{i}].reason: {why}"
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(doc))
    if error is None:
        return _partial_seedpack(doc)
    return f"{field_path(error)}: {_plain(error)}"


def _partial_seedpack(doc: dict) -> str | None:
    """A campaign that freezes certifies the plan's seedpack: the freeze refuses a certification of fewer seeds (its
    cross-seed spread is not the seedpack's), so such a campaign is refused before it runs, not at its last step."""
    from engine import REQUIRED_SEEDS
    from tuning.common.limits import seedpack_missing

    steps = doc.get("steps", [])
    if not any("freeze" in step for step in steps):
        return None
    for i, step in enumerate(steps):
        seeds = step.get("certify", {}).get("seeds") if isinstance(step.get("certify"), dict) else None
        missing = seedpack_missing(seeds) if seeds is not None else []
        if missing:
            return (f"steps[{i}].certify.seeds: a campaign that freezes certifies the plan's seedpack "
                    f"({','.join(map(str, REQUIRED_SEEDS))}); missing {','.join(map(str, missing))}")
    return None


def _plain(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        return f"{error.message} (a key the campaign does not read; check its spelling)"
    return error.message
