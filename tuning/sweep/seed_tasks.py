"""Each seed's chain of a trial as a Dask task: ``python -m tuning.sweep --cluster local:K|tcp://host:port``.

The study, the base policies and the world (its catalogue already read) are scattered to every worker once;
a trial submits one task per seed (:func:`score_seed`), and the per-seed evaluations come back in seed order.
A worker process keeps one :class:`tuning.objective.PhaseObjective` per (study, seed, base, world, fraction):
its anchor is computed once and the worker's one chain cache (within an eighth of the worker's Dask memory
limit) serves the worker's later trials, exactly as in a local process. Every seed's evaluation is a pure
function of (study, seed, base, world, fraction, knobs), so the trial's record is the local one (timings and
which states were served from which cache aside); a per-seed pruner reads the seeds in order afterwards and
keeps those a local run would have scored. Dask is the scheduler (:mod:`engine.chain.cluster` opens it);
nothing here schedules.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from typing import Iterator

from engine import EngineError

_OBJECTIVES: dict = {}   # per worker process: (study, seed, base, world, fraction) -> PhaseObjective
_MAX_OBJECTIVES = 16


@functools.cache
def _worker_cache():
    """The worker process's one chain cache, shared by its objectives (keys are content keys), within the budget of
    the memory Dask gives the worker (:mod:`tuning.study.cache_budget`)."""
    from tuning.study.cache_budget import chain_cache
    try:
        from distributed import get_worker
        limit = get_worker().memory_manager.memory_limit
    except (ImportError, ValueError, AttributeError):   # not in a Dask worker (a test calling it directly)
        limit = None
    return chain_cache(memory=limit)


def _key(spec, seed: int, base, world, fraction: float) -> tuple:
    study = hashlib.sha256(repr(spec).encode()).hexdigest()
    return study, int(seed), base.parameter_hash, world.fingerprint if world is not None else "", float(fraction)


def score_seed(spec, seed: int, base, world, fraction: float, knob_values: dict):
    """One seed's evaluation of one candidate (runs on a Dask worker)."""
    from tuning.study.objective import PhaseObjective

    key = _key(spec, seed, base, world, fraction)
    obj = _OBJECTIVES.get(key)
    if obj is None:
        if len(_OBJECTIVES) >= _MAX_OBJECTIVES:
            _OBJECTIVES.pop(next(iter(_OBJECTIVES)))
        obj = _OBJECTIVES[key] = PhaseObjective(spec, seed, base, world=world, fraction=fraction,
                                                cache=_worker_cache())
    return obj.evaluate(knob_values)


class ClusterSeeds:
    """A seed-robust objective's seeds as Dask tasks (``SeedRobustObjective.runner``)."""

    def __init__(self, client, spec, base, world) -> None:
        self.client = client
        self._shared = client.scatter([spec, base, world], broadcast=True, hash=False)

    def evaluate(self, objective, knob_values: dict) -> list:
        spec_f, base_f, world_f = self._shared
        futures = [self.client.submit(score_seed, spec_f, seed, base_f, world_f, objective.fraction,
                                      dict(knob_values), pure=False) for seed in objective.seeds]
        return self.client.gather(futures)


@contextlib.contextmanager
def cluster_seeds(spec_text: str, objective, spec, base, world) -> Iterator[ClusterSeeds]:
    """Open the Dask cluster ``spec_text`` (engine.cluster) and route ``objective``'s seeds through it."""
    from engine import dask_mapper

    with dask_mapper(spec_text) as mapper:
        runner = ClusterSeeds(mapper.client, spec, base, world)
        objective.runner = runner
        try:
            yield runner
        finally:
            objective.runner = None


def check_cluster(text: str | None, workers: int, code: str) -> None:
    """--cluster: local:K or tcp://host:port, and not with --workers > 1 (one process drives the cluster)."""
    if text is None:
        return
    from engine import parse_cluster

    try:
        parse_cluster(text)
    except EngineError as exc:
        raise EngineError(code, exc.cause) from None
    if workers > 1:
        raise EngineError(code, "--cluster runs one process's seeds on Dask; use it without --workers")
