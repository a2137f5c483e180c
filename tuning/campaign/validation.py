"""Validation of a sweep's candidates on seeds it was not tuned on: each re-scored there, and summarised as (the
share of seeds on which it holds the study, the share on which it reaches the campaign's goal, how steadily it clears
the gates it holds). The campaign's rules (tuning.campaign.rules.validated) choose by that summary.
"""

from __future__ import annotations

import sys
from typing import Mapping, Sequence

from engine import fidelity_holds, pool_outlets, pooled_fidelity

STEADY = 99.0   # the steadiness of a candidate none of whose held gates moves from seed to seed


def seed_margins(e) -> dict[str, float] | None:
    """One seed's relative margin (> 0 holds, < 0 misses; relative to the threshold) to each of the plan's hard and
    stretch gates and the fidelity gates with a positive threshold (F01 and F10 are counts): what a certification reads;
    None when the seed has no metric pack (it failed)."""
    if e.pack is None:
        return None
    out = {}
    for family, block in (e.gates or {}).items():
        if not isinstance(block, Mapping):
            continue
        for gate_id, g in block.items():
            value, threshold, op = g.get("value"), g.get("threshold"), g.get("op")
            if op not in ("<=", ">=") or isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not isinstance(threshold, (int, float)) or float(threshold) <= 0:
                continue
            gap = float(value) - float(threshold)
            out[gate_id] = (gap if op == ">=" else -gap) / float(threshold)
    return out


def steadiness(per_seed: Sequence[dict[str, float] | None]) -> float:
    """How many standard deviations its riskiest gate stands clear of its threshold: the smallest, over the gates
    held on every seed whose margin moves from seed to seed, of the margin's mean over its standard deviation. A
    gate that does not move (an S2 gate: the priors do not depend on the seed) is no risk however close, and a gate
    missed on some seed is left to the share of seeds on which the goal is reached. -1.0 when a seed failed;
    :data:`STEADY` when no held gate moves."""
    if not per_seed or any(m is None for m in per_seed):
        return -1.0
    zs = []
    for k in sorted(set().union(*per_seed)):
        margins = [m.get(k, -1.0) for m in per_seed]
        if min(margins) < 0:   # missed on a seed: not held
            continue
        mean = sum(margins) / len(margins)
        spread = (sum((v - mean) ** 2 for v in margins) / len(margins)) ** 0.5
        if spread > 1e-12 * max(1.0, abs(mean)):
            zs.append(mean / spread)
    return min(min(zs), STEADY) if zs else STEADY


DISTORTED_POOLED = (0.0, 0.0, -1.0)   # the score of a candidate its validation seeds pooled read DISTORTED (3A-F09)


def pooled_holds(ev, evidence) -> bool:
    """3A-F09 over the validation seeds: each country's realised outlets summed over them against its people
    (:mod:`engine.metrics.pooled`), as a certification reads its held-out seeds. True where nothing can be pooled
    (no evidence, or a seed scored without its outlets)."""
    if evidence is None or not evidence.applicable or not ev.per_seed or any(e.outlets is None for e in ev.per_seed):
        return True
    return pooled_fidelity(pool_outlets((e.outlets for e in ev.per_seed), evidence), evidence)["faithful"]


def validation_score(ev, evidence=None) -> tuple[float, float, float]:
    """(the share of seeds on which the evaluation is feasible and meets the study's targets; the share on which it
    reaches the campaign's goal, PASS_BPLUS and FAITHFUL; its :func:`steadiness` over those seeds): among candidates
    that hold everywhere, the one whose riskiest gate stands most standard deviations clear is the least likely to
    miss on a seed nobody has met, and a gate an earlier phase settled (S3's dispersion at P4) still counts."""
    if not pooled_holds(ev, evidence):   # a bias its seeds' scatter hides one by one: never chosen
        return DISTORTED_POOLED
    held = [not e.vetoes and all(e.targets.values()) for e in ev.per_seed]
    goal = [e.verdict == "PASS_BPLUS" and fidelity_holds(e.fidelity) for e in ev.per_seed]
    return sum(held) / len(held), sum(goal) / len(goal), steadiness([seed_margins(e) for e in ev.per_seed])


def validation_rates(sweep, candidates: list, n_seeds: int, progress: bool = False) -> tuple[dict[int, tuple], tuple]:
    """Each candidate re-scored on ``n_seeds`` validation seeds (:func:`tuning.authority.holdout.validation_seeds`):
    its :func:`validation_score` there; and the same for the authority itself (the anchor: what promoting nothing
    keeps)."""
    from optuna.trial import FixedTrial
    from tqdm import tqdm

    from tuning.authority.holdout import tuning_seeds, validation_seeds
    from tuning.study.objective import SeedRobustObjective

    seeds = validation_seeds(n_seeds, tuning_seeds(sweep.config.studies_dir))
    # the sweep's own chain cache, not a second one beside it: each is budgeted as the process's only cache, and two
    # held up to two thirds of the memory (helper 55: 13 GB at P3's validation of a 1 M-pair world)
    cache = sweep.objective.cache
    cache.max_entries = max(cache.max_entries, 64 * len(seeds))
    objective = SeedRobustObjective(sweep.spec, seeds, sweep.base, world=sweep.world, cache=cache)
    for per_seed in objective.per_seed:   # each chain keeps its realised outlets per clock: pooled over the seeds
        per_seed.keep_outlets = True
    evidence = getattr(sweep.world, "evidence", None)
    values = [{k.name: k.suggest(FixedTrial(dict(row.knobs), row.trial)) for k in sweep.spec.knobs}
              for row in candidates]
    with tqdm(total=len(seeds), desc=f"validation ({len(values)} candidates)", unit="seed", file=sys.stderr,
              disable=not progress, leave=False) as bar:   # seed by seed: each seed's plan drawn once for all
        evaluations = objective.evaluate_many(values, on_seed=lambda: bar.update(1))
    rates = {row.trial: validation_score(ev, evidence) for row, ev in zip(candidates, evaluations)}
    return rates, validation_score(objective.anchor, evidence)
