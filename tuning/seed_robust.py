"""Seed-robust scoring: one candidate scored on K seeds with common random numbers.

Each seed's evaluation is the single-seed one (``PhaseObjective`` on that seed, against the anchor
on the same seed). The trial's record aggregates them:

- ``J`` = mean of the per-seed J (and each delta the mean of its per-seed deltas);
- a veto on any seed vetoes the trial (constraint breach = the largest over seeds, per reason);
- a target holds only when it holds on every seed;
- the plan verdict is the worst per-seed verdict, the fidelity verdict FAITHFUL only when every
  seed is FAITHFUL;
- the second objective (a multi-objective study) is the mean of its metric over seeds.
"""

from __future__ import annotations

import math
from typing import Sequence

from tuning.study_spec import metric_or_none

PLAN_ORDER = ("PASS_BPLUS", "PASS_B", "FAIL_REALISM", "INVALID_FOR_GRADING", "NOT_SCORED")
FIDELITY_ORDER = ("FAITHFUL", "NOT_APPLICABLE", "UNMEASURED", "DISTORTED", "NOT_SCORED")


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
    for attr in ("identity", "pack", "gates", "s6_status", "s7_status", "floors", "tables", "error"):
        setattr(ev, attr, getattr(first, attr))
    ev.verdict = worst([e.verdict for e in per_seed], PLAN_ORDER)
    ev.fidelity = worst([e.fidelity for e in per_seed], FIDELITY_ORDER)
    ev.seconds = {k: math.fsum(e.seconds.get(k, 0.0) for e in per_seed) for k in first.seconds}
    ev.reused = sorted(set.intersection(*(set(e.reused) for e in per_seed))) if scored else []
    ev.chain_seconds = math.fsum(e.chain_seconds for e in per_seed)
    ev.build_seconds = first.build_seconds
    if second_metric is not None:
        values = [metric_or_none(e.pack, second_metric) for e in per_seed]
        ev.second_value = (math.fsum(values) / len(values)) if all(v is not None for v in values) else None
    return ev
