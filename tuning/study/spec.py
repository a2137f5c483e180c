"""Study files (``studies/<phase>.yaml``): the knob space, objective, vetoes, seeds and budget of a phase.

Loading validates the file against :data:`STUDY_SCHEMA` and then against the knob registry; any
problem is ``E3A_TUN_010_STUDY_INVALID`` naming the file and the field (``knobs[1].high``).

Objective: ``J = Σ weight · delta`` where a term's delta is ``anchor − candidate`` for
``direction: down`` and ``candidate − anchor`` for ``up``; a term with ``within: [lo, hi]`` (a corridor) scores
how much nearer the corridor the candidate is than the anchor (``up`` while both are below it, ``down`` while both
are above it, zero inside it); the anchor is the base (authority) policy set run on the same seed. Vetoes: structural rails by name plus guardrails
``{metric, op, value | anchor: true [offset], reason}``; a guardrail with ``anchor: true`` compares
to the anchor's value plus ``offset`` (non-regression, or a movement envelope). ``targets`` use the same form and are reported, never vetoed.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from engine import EngineError
from engine import load_yaml, non_finite_path
from tuning.common.errors import E_STUDY_INVALID, E_STUDY_MISSING
from tuning.study.knobs import KNOBS, check_value
from tuning.common.limits import MAX_TRIALS, STUDY_NAME, UINT64_MAX

# fidelity: the run must be FAITHFUL; gate_regression: no plan gate (hard or stretch) that passes on the
# anchor (same seed) may fail on the candidate
STRUCTURAL_VETOES = ("s6_pass", "s7_pass", "conservation", "schema", "realism_floors", "fidelity", "gate_regression")
OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq}
_UINT64 = {"type": "integer", "minimum": 0, "maximum": UINT64_MAX}
_METRIC = {"type": "string", "pattern": r"^(s1|s2|s3|s4|zone_alloc|fidelity)\.[A-Za-z0-9_]+$"}
_CONDITION = {
    "type": "object", "additionalProperties": False, "required": ["metric", "op"],
    "properties": {"metric": _METRIC, "op": {"enum": list(OPS)}, "value": {"type": "number"},
                   "anchor": {"type": "boolean"}, "offset": {"type": "number"}, "reason": {"type": "string", "pattern": "^[A-Z0-9_]+$"},
                   "name": {"type": "string"}},
    "oneOf": [{"required": ["value"], "not": {"required": ["anchor"]}},
              {"required": ["anchor"], "not": {"required": ["value"]}}],
}
MAX_GRID_POINTS = 1_000_000   # a stepped knob's points at most (Optuna's decimal grid fails far beyond)
SWEPT_PHASES = ("P1.1", "P1.2", "P1.3", "P1.4", "P2", "P3", "P4")   # the plan's tuning phases

STUDY_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "required": ["phase", "knobs", "objective", "vetoes", "seeds", "trials", "sampler"],
    "properties": {
        "phase": {"enum": list(SWEPT_PHASES)},   # a phase of the plan a sweep tunes (P0, P5, P6 are not swept)
        "study": {"type": "string", "pattern": STUDY_NAME},
        "description": {"type": "string"},
        "base_policies": {"type": "string", "minLength": 1},
        "world": {"type": "string", "minLength": 1},   # a world directory, relative to this file
        "seeds": {"type": "array", "minItems": 1, "maxItems": 64, "uniqueItems": True, "items": _UINT64},  # J = mean
        "trials": {"type": "integer", "minimum": 1, "maximum": MAX_TRIALS},
        "sampler": {
            "type": "object", "additionalProperties": False, "required": ["name", "seed"],
            "properties": {"name": {"enum": ["tpe", "random"]}, "seed": _UINT64,
                           "n_startup_trials": {"type": "integer", "minimum": 0, "maximum": MAX_TRIALS},
                           "multivariate": {"type": "boolean"}},
        },
        "knobs": {
            "type": "array", "minItems": 1,
            "items": {
                "type": "object", "additionalProperties": False, "required": ["name"],
                "properties": {"name": {"type": "string"}, "low": {"type": "number"}, "high": {"type": "number"},
                               "log": {"type": "boolean"}, "step": {"type": "number", "exclusiveMinimum": 0},
                               "value": {}, "choices": {"type": "array", "minItems": 1}},
                "oneOf": [{"required": ["low", "high"]}, {"required": ["value"]}, {"required": ["choices"]}],
            },
        },
        "objective": {
            "type": "object", "additionalProperties": False, "required": ["name", "terms"],
            "properties": {
                "name": {"type": "string"},
                "anchor": {"enum": ["authority"]},   # the only anchor (older study files name it)
                "terms": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False,
                    "required": ["name", "metric", "direction", "weight"],
                    "properties": {"name": {"type": "string", "pattern": "^[a-z0-9_]+$"}, "metric": _METRIC,
                                   "direction": {"enum": ["up", "down"]}, "weight": {"type": "number"},
                                   # a corridor [lo, hi]: the delta is how much nearer to it the candidate is
                                   "within": {"type": "array", "items": {"type": "number"}, "minItems": 2,
                                              "maxItems": 2}}}},
                # a second objective makes the study multi-objective (J up, this metric's direction)
                "second": {"type": "object", "additionalProperties": False, "required": ["name", "metric", "direction"],
                           "properties": {"name": {"type": "string", "pattern": "^[a-z0-9_]+$"}, "metric": _METRIC,
                                          "direction": {"enum": ["minimize", "maximize"]}}},
            },
        },
        "pruner": {
            "type": "object", "additionalProperties": False, "required": ["name"],
            "properties": {"name": {"enum": ["median", "none"]},
                           "n_startup_trials": {"type": "integer", "minimum": 0},
                           "n_warmup_steps": {"type": "integer", "minimum": 0},
                           # PRUNED trials a single-stage study runs before it stops short of its COMPLETE budget
                           "max_pruned": {"type": "integer", "minimum": 1, "maximum": MAX_TRIALS}},
        },
        # multi-fidelity search (tuning.study.fidelity): increasing merchant fractions ending at 1.0; successive halving
        "fidelity": {
            "type": "object", "additionalProperties": False, "required": ["fractions"],
            "properties": {"fractions": {"type": "array", "minItems": 1, "maxItems": 4,
                                         "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}},
                           "reduction_factor": {"type": "integer", "minimum": 2, "maximum": 100},
                           "min_pairs": {"type": "integer", "minimum": 0},
                           "search_pairs": {"type": "integer", "minimum": 1}},
        },
        "vetoes": {
            "type": "object", "additionalProperties": False, "required": ["structural"],
            "properties": {"structural": {"type": "array", "items": {"enum": list(STRUCTURAL_VETOES)}},
                           "guardrails": {"type": "array", "items": _CONDITION}},
        },
        "targets": {"type": "array", "items": _CONDITION},
        "precheck": {
            "type": "object", "additionalProperties": False, "required": ["triggers", "open", "closed"],
            "properties": {"triggers": {"type": "array", "minItems": 1, "items": _CONDITION},
                           "open": {"type": "string"}, "closed": {"type": "string"}},
        },
        "key_metrics": {"type": "array", "items": _METRIC},
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(STUDY_SCHEMA)
DEFAULT_KEY_METRICS = ["s2.top1_share_median_multi_tz", "s2.share_top1_ge_099_multi_tz",
                       "s3.merchant_share_std_median", "s4.escalated_multi_zone_rate",
                       "s4.top1_share_median", "zone_alloc.top1_share_median"]


@dataclass(frozen=True)
class KnobSpace:
    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    value: Any = None
    choices: tuple | None = None

    @property
    def fixed(self) -> bool:
        return self.low is None and self.choices is None

    def suggest(self, trial) -> Any:
        """Ask an Optuna trial for this knob (fixed knobs are not Optuna params)."""
        if self.fixed:
            return self.value
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if KNOBS[self.name].kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)


@dataclass(frozen=True)
class Condition:
    metric: str
    op: str
    value: float | None = None
    anchor: bool = False
    reason: str = "GUARDRAIL_BREACH"
    name: str = ""
    offset: float = 0.0

    def threshold(self, anchor_pack: dict | None) -> float:
        if self.anchor:
            return metric_value(anchor_pack, self.metric) + self.offset
        return float(self.value)

    def holds(self, pack: dict, anchor_pack: dict | None) -> bool:
        return bool(OPS[self.op](metric_value(pack, self.metric), self.threshold(anchor_pack)))

    def breach(self, pack: dict, anchor_pack: dict | None) -> float:
        """0 when the condition holds, else the (positive) distance to the threshold relative to the threshold
        (at least 0.01 in scale): breaches of metrics on different scales add up comparably, so a constrained
        sampler is not led by whichever metric happens to have the larger unit."""
        if self.holds(pack, anchor_pack):
            return 0.0
        threshold = self.threshold(anchor_pack)
        return max(abs(metric_value(pack, self.metric) - threshold) / max(abs(threshold), 0.01), 1e-9)

    def margin(self, pack: dict, anchor_pack: dict | None) -> float:
        """How far the condition holds (> 0) or misses (< 0), relative to its threshold (at least 0.01)."""
        threshold = self.threshold(anchor_pack)
        gap = metric_value(pack, self.metric) - threshold
        return (gap if self.op in (">=", ">") else -gap) / max(abs(threshold), 0.01)

    def label(self) -> str:
        rhs = (f"anchor{self.offset:+g}" if self.offset else "anchor") if self.anchor else f"{self.value:g}"
        return self.name or f"{self.metric} {self.op} {rhs}"


@dataclass(frozen=True)
class StudySpec:
    path: Path
    phase: str
    study: str
    description: str
    base_policies: str
    seeds: tuple[int, ...]
    trials: int
    sampler: dict
    knobs: tuple[KnobSpace, ...]
    objective_name: str
    terms: tuple[dict, ...]
    structural: tuple[str, ...]
    guardrails: tuple[Condition, ...]
    targets: tuple[Condition, ...] = ()
    precheck: dict | None = None
    second: dict | None = None       # {name, metric, direction}: a multi-objective study
    pruner: dict | None = None       # {name: median|none, n_startup_trials, n_warmup_steps, max_pruned}
    fidelity: dict | None = None     # {fractions, reduction_factor, min_pairs, search_pairs} (None: the default)
    key_metrics: tuple[str, ...] = field(default_factory=lambda: tuple(DEFAULT_KEY_METRICS))
    world: str | None = None         # the study's world directory (resolved against the study file's folder)

    @property
    def multi_objective(self) -> bool:
        return self.second is not None

    @property
    def directions(self) -> list[str]:
        return ["maximize"] + ([self.second["direction"]] if self.second else [])

    @property
    def experiment(self) -> str:
        return f"3A-{self.phase}"


def metric_value(pack: dict, path: str) -> float:
    """``"s4.top1_share_median"`` -> float from a metric pack (bools as 0/1)."""
    family, key = path.split(".", 1)
    try:
        value = pack[family][key]
    except (KeyError, TypeError):
        raise EngineError(E_STUDY_INVALID, f"metric {path!r} is not in the metric pack") from None
    return float(value)


def named_metrics(spec: StudySpec) -> list[tuple[str, str]]:
    """(field, metric) for every metric the study names: terms, second objective, guardrails, targets, precheck
    triggers and key metrics."""
    named = [(f"objective.terms[{i}].metric", t["metric"]) for i, t in enumerate(spec.terms)]
    named += [("objective.second.metric", spec.second["metric"])] if spec.second else []
    named += [(f"vetoes.guardrails[{i}].metric", c.metric) for i, c in enumerate(spec.guardrails)]
    named += [(f"targets[{i}].metric", c.metric) for i, c in enumerate(spec.targets)]
    named += [(f"precheck.triggers[{i}].metric", t["metric"])
              for i, t in enumerate((spec.precheck or {}).get("triggers", []))]
    return named + [(f"key_metrics[{i}]", m) for i, m in enumerate(spec.key_metrics)]


def check_metrics(spec: StudySpec, pack: dict) -> None:
    """Every metric the study names is a number of the metric pack (checked on the anchor's pack, before any
    journal or MLflow run exists); else ``E3A_TUN_010`` naming the field."""
    for where, metric in named_metrics(spec):
        family, key = metric.split(".", 1)
        value = pack.get(family, {}).get(key) if isinstance(pack.get(family), dict) else None
        if isinstance(value, str) or not isinstance(value, (int, float)):
            raise _fail(str(spec.path), where, f"metric {metric!r} is not a number of the metric pack")


def metric_or_none(pack: dict | None, path: str) -> float | None:
    """``metric_value``, or None when there is no pack or the metric is missing."""
    try:
        return metric_value(pack, path) if pack is not None else None
    except EngineError:
        return None


def _fail(source: str, where: str, msg: str) -> EngineError:
    return EngineError(E_STUDY_INVALID, f"{source}: {where}: {msg}")


def field_path(error: jsonschema.ValidationError) -> str:
    """Where a schema error lies, as a reader writes it: ``knobs[1].high``, or ``(top level)``."""
    parts = ""
    for p in error.absolute_path:
        parts += f"[{p}]" if isinstance(p, int) else (f".{p}" if parts else str(p))
    return parts or "(top level)"


def _knob_space(source: str, i: int, raw: dict) -> KnobSpace:
    where = f"knobs[{i}]"
    name = raw["name"]
    if name not in KNOBS:
        raise _fail(source, f"{where}.name", f"unknown knob {name!r}")
    k = KNOBS[name]

    def in_domain(field_name: str, value: Any) -> Any:
        try:
            return check_value(name, value)
        except EngineError as exc:
            raise _fail(source, f"{where}.{field_name}", exc.cause) from None

    if "value" in raw:
        return KnobSpace(name, value=in_domain("value", raw["value"]))
    if "choices" in raw:
        return KnobSpace(name, choices=tuple(in_domain(f"choices[{j}]", c) for j, c in enumerate(raw["choices"])))
    if k.kind == "bool":
        raise _fail(source, where, f"boolean knob {name} needs choices or value, not a range")
    low, high = in_domain("low", raw["low"]), in_domain("high", raw["high"])
    if not low < high:
        raise _fail(source, f"{where}.high", f"high {high} must exceed low {low}")
    log = bool(raw.get("log", False))
    if log and low <= 0:
        raise _fail(source, f"{where}.low", "a log-scaled knob needs low > 0")
    step = raw.get("step")
    if step is not None and k.kind == "int" and float(step) != int(step):
        raise _fail(source, f"{where}.step", f"integer knob {name} needs an integer step")
    if step is not None and log:
        raise _fail(source, f"{where}.step", "step and log cannot be combined")
    if step is not None and step > high - low:
        raise _fail(source, f"{where}.step", f"step {step} is larger than the range [{low}, {high}]")
    if step is not None and (high - low) / step > MAX_GRID_POINTS:   # Optuna's grid arithmetic fails every trial
        raise _fail(source, f"{where}.step", f"step {step} cuts [{low}, {high}] into more than {MAX_GRID_POINTS:,} "
                                             f"points; leave step out for a continuous knob")
    return KnobSpace(name, low=low, high=high, log=log, step=step)


def parse_condition(raw: dict, default_reason: str) -> Condition:
    return Condition(raw["metric"], raw["op"], raw.get("value"), bool(raw.get("anchor", False)),
                     raw.get("reason", default_reason), raw.get("name", ""), float(raw.get("offset", 0.0)))


def parse_study(doc: Any, source: str) -> StudySpec:
    at = non_finite_path(doc)
    if at is not None:  # NaN passes every schema bound and would switch a guardrail off
        raise _fail(source, at, "number is not finite (NaN, inf, or an integer too large for a float)")
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(doc))
    if error is not None:
        raise _fail(source, field_path(error), error.message)
    knobs = tuple(_knob_space(source, i, raw) for i, raw in enumerate(doc["knobs"]))
    names = [k.name for k in knobs]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise _fail(source, f"knobs[{names.index(dup, names.index(dup) + 1)}].name", f"knob {dup!r} listed twice")
    if all(k.fixed for k in knobs):
        raise _fail(source, "knobs", "at least one knob must be searched (range or choices)")
    for i, term in enumerate(doc["objective"]["terms"]):
        if not math.isfinite(term["weight"]) or term["weight"] < 0:
            raise _fail(source, f"objective.terms[{i}].weight", "must be finite and >= 0 (a term's direction says "
                                                                  "which way is better)")
        if "within" in term and not (all(map(math.isfinite, term["within"])) and term["within"][0] <= term["within"][1]):
            raise _fail(source, f"objective.terms[{i}].within", "must be [low, high], finite, low <= high")
    terms = [term["name"] for term in doc["objective"]["terms"]]
    again = next((i for i, n in enumerate(terms) if n in terms[:i]), None)
    if again is not None:   # J sums its deltas by name: a second term of one name replaced the first
        raise _fail(source, f"objective.terms[{again}].name", f"term {terms[again]!r} listed twice (each term's name "
                                                              f"keys its delta; give each its own)")
    if not any(term["weight"] for term in doc["objective"]["terms"]):
        raise _fail(source, "objective.terms", "every weight is 0: J would be 0 for every trial")
    fractions = doc.get("fidelity", {}).get("fractions", [1.0])
    if fractions[-1] != 1.0 or any(b <= a for a, b in zip(fractions, fractions[1:])):
        raise _fail(source, "fidelity.fractions", "fractions must increase and end at 1.0")
    phase = doc["phase"]
    return StudySpec(
        path=Path(source), phase=phase, study=doc.get("study", f"3A-{phase}"),
        description=doc.get("description", ""), base_policies=doc.get("base_policies", "policies"),
        seeds=tuple(doc["seeds"]), trials=doc["trials"], sampler=dict(doc["sampler"]), knobs=knobs,
        objective_name=doc["objective"]["name"],
        terms=tuple(dict(t) for t in doc["objective"]["terms"]),
        structural=tuple(doc["vetoes"]["structural"]),
        guardrails=tuple(parse_condition(g, "GUARDRAIL_BREACH") for g in doc["vetoes"].get("guardrails", [])),
        targets=tuple(parse_condition(t, "TARGET") for t in doc.get("targets", [])),
        precheck=doc.get("precheck"),
        second=dict(doc["objective"]["second"]) if "second" in doc["objective"] else None,
        pruner=dict(doc["pruner"]) if "pruner" in doc else None,
        fidelity=dict(doc["fidelity"]) if "fidelity" in doc else None,
        key_metrics=tuple(doc.get("key_metrics", DEFAULT_KEY_METRICS)),
        world=str(Path(source).parent / doc["world"]) if "world" in doc else None,
    )


def load_study(phase_or_path: str, studies_dir: str | Path = "studies") -> StudySpec:
    """Load ``studies/<phase>.yaml`` (or a path to a study file)."""
    path = Path(phase_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = Path(studies_dir) / f"{phase_or_path}.yaml"
    if not path.exists():
        phases = sorted(f.stem for f in Path(studies_dir).glob("*.yaml") if f.stem != "campaign")
        known = f" (phases in {studies_dir}: {', '.join(phases)})" if phases else \
            f" (no study files in {Path(studies_dir).resolve()}: run from the project root, or pass --studies-dir DIR)"
        raise EngineError(E_STUDY_MISSING, f"{path}: study file not found{known}")
    return parse_study(load_yaml(path, E_STUDY_INVALID, E_STUDY_MISSING), str(path))
