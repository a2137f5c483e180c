"""Multi-fidelity search: candidates are scored first on a keyed merchant subsample, only promising ones on
the whole world (``docs/TUNING.md`` "Multi-fidelity search").

A study's ``fidelity`` block (or :data:`DEFAULT_FIDELITY`) gives increasing merchant fractions ending at 1.0,
the successive-halving ``reduction_factor``, ``min_pairs`` (a world with fewer pairs keeps today's single stage)
and ``search_pairs``. The subsample's error follows the pairs it keeps, not the fraction (README "At scale"), so
with ``search_pairs`` the first stage keeps about that many pairs: its fraction is ``search_pairs / pairs``
rounded up to a step (:func:`kept_fraction`), and a world where that is above the schedule's first fraction is
too small to search on that many pairs at that cost: it keeps today's single stage (with the default, every world
under 250 k pairs; a full-scale trial there costs well under a second a seed). A multi-objective study keeps a
single stage too (Optuna prunes single-objective studies only).

Stage ``i`` scores the candidate on every seed at fraction ``f_i`` (:class:`tuning.objective.SeedRobustObjective`
with ``fraction=f_i``: J against the anchor on the same subsample, common random numbers) and reports to Optuna
``J`` (minus :data:`INFEASIBLE_PENALTY` when a veto fires at that stage) at step ``round(1000 * f_i)``; Optuna's
own :class:`optuna.pruners.SuccessiveHalvingPruner` (``min_resource`` = the first stage's step) decides
whether it goes on (the fraction is the budget). A pruned trial is told PRUNED with its search-stage record
(``fidelity.fraction`` < 1, veto reason ``PRUNED``), so it is never ranked as a full-scale result; a trial that
reaches the last stage is told its full-scale J and keeps its search-stage estimate (``search.*``).
Witness replays, promotion and certification build their own objectives at fraction 1.
"""

from __future__ import annotations

import math

import optuna

# The pairs the first stage keeps (README "At scale"): the smallest kept count measured whose largest errors on every
# gated metric are those of f = 0.1, and whose verdicts agree with full scale on every seed, on the 100x and the
# 381k worlds (eight seeds each).
SEARCH_PAIRS = 25_000
DEFAULT_FIDELITY = {"fractions": [0.1, 1.0], "reduction_factor": 3, "search_pairs": SEARCH_PAIRS}
INFEASIBLE_PENALTY = 1.0
STEP_SCALE = 1000


def schedule_of(spec) -> dict:
    return dict(spec.fidelity) if spec.fidelity is not None else dict(DEFAULT_FIDELITY)


def kept_fraction(search_pairs: int, pairs: int) -> float:
    """The fraction keeping about ``search_pairs`` of ``pairs`` pairs: the ratio rounded up to a step (1 / STEP_SCALE,
    so a stage's fraction and its pruner step are exact), one step at least."""
    return max(1, math.ceil(STEP_SCALE * search_pairs / max(pairs, 1) - 1e-9)) / STEP_SCALE


def stages(spec, pairs: int) -> tuple[float, ...]:
    """The fractions this study runs on a world of ``pairs`` pairs: (1.0,) when single-stage."""
    sched = schedule_of(spec)
    fractions = tuple(float(f) for f in sched["fractions"])
    if len(fractions) < 2 or spec.multi_objective or pairs < int(sched.get("min_pairs", 0)):
        return (1.0,)
    if not sched.get("search_pairs"):
        return fractions
    first = kept_fraction(int(sched["search_pairs"]), pairs)
    return (first, *fractions[1:]) if first <= fractions[0] else (1.0,)


def step(fraction: float) -> int:
    return max(1, int(round(STEP_SCALE * fraction)))


def pruner(spec, fractions) -> optuna.pruners.BasePruner | None:
    """Successive halving with the fraction as the budget, or None for a single stage."""
    if len(fractions) < 2:
        return None
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=step(fractions[0]),
                                                  reduction_factor=int(schedule_of(spec).get("reduction_factor", 3)),
                                                  min_early_stopping_rate=0, bootstrap_count=0)


def rung_value(ev) -> float:
    """What a stage reports to the pruner: J, below every feasible candidate when vetoed at that stage."""
    return float(ev.value) - (INFEASIBLE_PENALTY if ev.vetoes else 0.0)


def summary(ev) -> dict:
    """A stage's record (Optuna user attribute, MLflow ``search.*``)."""
    return {"fraction": ev.fraction, "J": float(ev.value), "verdict": ev.verdict, "fidelity": ev.fidelity,
            "vetoes": list(ev.vetoes), "chain_seconds": float(ev.chain_seconds)}


class MultiFidelityObjective:
    """The sweep's objective: the full-scale :class:`SeedRobustObjective` (what the anchor, the precheck and
    every attribute a caller reads come from) and, on a large world, one per search fraction sharing its
    chain cache. :meth:`evaluate` runs the stages; ``on_rung(fraction, ev) -> prune?`` is the pruner's call."""

    def __init__(self, full, spec, base, world) -> None:
        self.full, self.spec, self.base, self.world = full, spec, base, world
        self._fractions: tuple[float, ...] | None = None
        self._stage_objectives: dict[float, SeedRobustObjective] = {}
        self.pruned = False
        self.stage_fraction = 1.0

    def __getattr__(self, name):
        return getattr(self.full, name)

    @property
    def runner(self):
        return self.full.runner

    @runner.setter
    def runner(self, value) -> None:
        """The seeds as Dask tasks (tuning.sweep.seed_tasks), at every stage."""
        for obj in (self.full, *self._stage_objectives.values()):
            obj.runner = value

    @property
    def pairs(self) -> int:
        """The world's size: the anchor's pair count on the first seed."""
        return int(self.full.per_seed[0].anchor.pack["s1"]["pairs_total"])

    @property
    def fractions(self) -> tuple[float, ...]:
        """The stages, from the world's size."""
        if self._fractions is None:
            self._fractions = stages(self.spec, self.pairs)
        return self._fractions

    @property
    def multi_fidelity(self) -> bool:
        return len(self.fractions) > 1

    def stage(self, fraction: float):
        """The seed-robust objective at ``fraction`` (the full one at 1)."""
        from tuning.study.objective import SeedRobustObjective

        if fraction == 1.0:
            return self.full
        if fraction not in self._stage_objectives:
            self._stage_objectives[fraction] = SeedRobustObjective(
                self.spec, self.full.seeds, self.base, world=self.world, cache=self.full.cache, fraction=fraction)
            self._stage_objectives[fraction].runner = self.full.runner
        return self._stage_objectives[fraction]

    def warm(self) -> None:
        """Every search stage's anchor (what each candidate at that fraction is measured against), before the
        first trial: ``--workers`` processes forked from this one inherit it instead of computing it each.
        On a large world the seeds after the first run two at a time (:func:`tuning.study.objective.seed_threads`)."""
        from tuning.study.objective import seeds_first_then_threads

        for fraction in self.fractions[:-1]:
            seeds_first_then_threads(lambda obj: obj.anchor, self.stage(fraction).per_seed, lambda _: self.pairs)

    def evaluate(self, knob_values, run_root=None, on_seed=None, on_rung=None):
        """One candidate through the stages (``on_rung`` given and several stages) or at full scale only."""
        self.pruned, searched = False, []
        if on_rung is None or not self.multi_fidelity:
            ev = self.full.evaluate(knob_values, run_root, on_seed)
            self.pruned = self.full.pruned
            return ev
        for fraction in self.fractions[:-1]:
            ev = self.stage(fraction).evaluate(knob_values, None)
            searched.append(summary(ev))
            if on_rung(fraction, ev):
                self.pruned = True
                ev.search = searched
                return ev
        ev = self.full.evaluate(knob_values, run_root)
        ev.search = searched
        return ev


def search_metrics(ev) -> dict:
    """MLflow metrics of a trial's stages: its own fraction, and each search stage's J and fraction."""
    out = {"fidelity.fraction": float(getattr(ev, "fraction", 1.0))}
    for i, s in enumerate(getattr(ev, "search", None) or []):
        out[f"search.{i}.fraction"] = s["fraction"]
        out[f"search.{i}.J"] = s["J"]
    return out


def same_verdict(ev) -> bool | None:
    """Whether a full-scale trial's verdicts equal its last search stage's estimate (None: not searched)."""
    searched = getattr(ev, "search", None) or []
    if not searched or ev.fraction != 1.0:
        return None
    last = searched[-1]
    return last["verdict"] == ev.verdict and last["fidelity"] == ev.fidelity and math.isfinite(last["J"])
