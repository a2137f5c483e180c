"""Seed-robust scoring: one candidate scored on K seeds with common random numbers.

Each seed's evaluation is the single-seed one (``PhaseObjective`` on that seed, against the anchor
on the same seed). The trial's record aggregates them:

- ``J`` = mean of the per-seed J (and each delta the mean of its per-seed deltas);
- a veto on any seed vetoes the trial (constraint breach = the largest over seeds, per reason);
- a target holds only when it holds on every seed;
- the plan verdict is the worst per-seed verdict, the fidelity verdict FAITHFUL only when every
  seed is FAITHFUL;
- the second objective (a multi-objective study) is the mean of its metric over seeds;
- each gate is its worst seed's (:func:`worst_gates`): it passes only when it passes on every seed, so
  the gates agree with the worst-seed verdict.

What the trail logs for the metric pack (:func:`seed_metrics`): each metric's mean over the seeds under
its own name, and its worst seed's value as ``worst.<metric>``. "Worst" is judged in the direction of the
metric's gate (a ceiling ``<=``: the highest value; a floor ``>=`` or a rail ``== true``: the lowest), else
in the direction the study judges it (:func:`study_directions`: an objective term, the second objective,
a guardrail or a target); a metric that nothing judges has no worst value.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from engine import FIDELITY_WORST_LAST
from tuning.study.spec import metric_or_none

PLAN_ORDER = ("PASS_BPLUS", "PASS_B", "FAIL_REALISM", "INVALID_FOR_GRADING", "NOT_SCORED")
FIDELITY_ORDER = (*FIDELITY_WORST_LAST, "NOT_SCORED")   # engine.metrics.gates' order, then a seed not scored


def worst(verdicts: Sequence[str], order: Sequence[str]) -> str:
    rank = {v: i for i, v in enumerate(order)}
    return max(verdicts, key=lambda v: rank.get(v, len(order))) if verdicts else order[-1]


def aggregate(per_seed: list, seeds: Sequence[int], second_metric: str | None):
    """The trial's Evaluation from its per-seed evaluations (the first seed's carries identity/pack)."""
    first = per_seed[0]
    ev = type(first)(dict(first.knobs), first.policies)
    ev.per_seed = list(per_seed)
    ev.seeds = [int(s) for s in seeds]
    scored = [e for e in per_seed if e.pack is not None]
    ev.value = math.fsum(e.value for e in per_seed) / len(per_seed)
    ev.seed_values = [e.value for e in per_seed]
    names = sorted({k for e in per_seed for k in e.deltas})
    ev.deltas = {k: math.fsum(e.deltas.get(k, 0.0) for e in per_seed) / len(per_seed) for k in names}
    reasons = sorted({r for e in per_seed for r in e.constraints})
    ev.constraints = {r: max(e.constraints.get(r, 0.0) for e in per_seed) for r in reasons}
    ev.vetoes = sorted({v for e in per_seed for v in e.vetoes})
    ev.veto_detail = [f"seed {s}: {line}" for s, e in zip(seeds, per_seed) for line in e.veto_detail]
    labels = sorted({k for e in per_seed for k in e.targets})
    ev.targets = {k: all(e.targets.get(k, False) for e in per_seed) for k in labels}
    for attr in ("identity", "pack", "s6_status", "s7_status", "floors", "tables", "error"):
        setattr(ev, attr, getattr(first, attr))
    ev.gates = worst_gates([e.gates for e in scored if e.gates is not None]) if scored else first.gates
    ev.verdict = worst([e.verdict for e in per_seed], PLAN_ORDER)
    ev.fidelity = worst([e.fidelity for e in per_seed], FIDELITY_ORDER)
    ev.seconds = {k: math.fsum(e.seconds.get(k, 0.0) for e in per_seed) for k in first.seconds}
    ev.reused = sorted(set.intersection(*(set(e.reused) for e in per_seed))) if scored else []
    ev.chain_seconds = math.fsum(e.chain_seconds for e in per_seed)
    ev.build_seconds = first.build_seconds
    ev.fraction = getattr(first, "fraction", 1.0)
    if second_metric is not None:
        values = [metric_or_none(e.pack, second_metric) for e in per_seed]
        ev.second_value = (math.fsum(values) / len(values)) if all(v is not None for v in values) else None
    return ev


UP, DOWN = "up", "down"      # higher is better | lower is better
_STATUS_RANK = {"PASS": 0, "N/A": 1}   # anything else (FAIL) ranks worst


def gate_direction(op: str, threshold) -> str:
    """A gate's direction: a ceiling (``<=``) wants low values, a floor (``>=``) or a rail ``== true`` high."""
    if op == "==":
        return UP if bool(threshold) else DOWN
    return DOWN if op in ("<=", "<") else UP


def _badness(entry: Mapping) -> tuple:
    """Sort key of one seed's gate entry: failing first, then the value furthest on the failing side."""
    value = entry.get("value")
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    far = math.inf if x != x else (x if gate_direction(entry["op"], entry["threshold"]) == DOWN else -x)
    return _STATUS_RANK.get(entry.get("status"), 2), far


def worst_gates(per_seed: Sequence[Mapping]) -> dict:
    """The gate table of the worst seed, gate by gate: each gate's entry from the seed where it fails (or is
    furthest from its threshold); one seed's table is returned as it is."""
    out: dict[str, dict] = {}
    for gates in per_seed:
        for family, block in gates.items():
            fam = out.setdefault(family, {})
            for gid, entry in block.items():
                if gid not in fam or _badness(entry) > _badness(fam[gid]):
                    fam[gid] = entry
    return out


def study_directions(spec) -> dict[str, str]:
    """The direction in which the study judges each metric it names: objective terms first, then the second
    objective, then guardrails and targets."""
    out: dict[str, str] = {}
    for cond in (*spec.targets, *spec.guardrails):
        out[cond.metric] = gate_direction(cond.op, True)
    if spec.second:
        out[spec.second["metric"]] = DOWN if spec.second["direction"] == "minimize" else UP
    # a corridor term's worst seed is not one end of a scale: its metric keeps another condition's direction, if any
    out.update({t["metric"]: t["direction"] for t in spec.terms if "within" not in t})
    return out


def metric_directions(gates: Sequence[Mapping], study: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each judged metric's direction: its gate's (from the gate tables), else the study's."""
    out = dict(study or {})
    for table in gates:
        for block in table.values():
            out.update({g["metric"]: gate_direction(g["op"], g["threshold"]) for g in block.values()})
    return out


def seed_metrics(flats: Sequence[Mapping[str, float]],
                 directions: Mapping[str, str]) -> tuple[dict[str, float], dict[str, float]]:
    """(mean over seeds, worst seed's value) of every flattened metric: the mean over the seeds that have
    it; the worst only for a metric with a direction (``directions``)."""
    names = sorted({k for flat in flats for k in flat})
    mean, worst_ = {}, {}
    for name in names:
        values = [flat[name] for flat in flats if name in flat]
        mean[name] = math.fsum(values) / len(values)
        if name in directions:
            worst_[name] = max(values) if directions[name] == DOWN else min(values)
    return mean, worst_
