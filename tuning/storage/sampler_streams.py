"""Sampler streams: every trial draws from its own random stream, keyed by (study seed, trial number).

The coordination contract of parallel and distributed sweeps. Optuna numbers the trials of a study
uniquely across every process and machine on its storage, so keying a trial's stream on its number
means no two processes, workers or hosts ever share a stream - by construction, with no worker
index to hand out. A single-process sweep with the same study seed proposes the same parameter
sequence on every re-run (``campaign replay`` depends on it): the stream of trial n depends only on
(seed, n), and the history the sampler reads is the same.

Stream seed = first 4 bytes (little-endian) of SHA-256(uer("3A.sampler_stream") ‖ LE64(study seed) ‖
LE64(trial number)), the project's hashing laws (engine.core.hashing). Built on Optuna's public API only:
:class:`StreamSampler` is a ``BaseSampler`` that builds the configured sampler for each trial with
that trial's seed (``factory(seed)``) and delegates to it.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Callable

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from engine import le64, sha256, uer

SamplerFactory = Callable[[int], BaseSampler]


def stream_seed(study_seed: int, identity: int) -> int:
    """The 32-bit seed of the stream of ``identity`` (a trial number) under ``study_seed``."""
    digest = sha256(uer("3A.sampler_stream") + le64(study_seed) + le64(identity))
    return int.from_bytes(digest[:4], "little")


class StreamSampler(BaseSampler):
    """Delegates each trial to ``factory(stream_seed(study_seed, trial.number))``."""

    def __init__(self, study_seed: int, factory: SamplerFactory) -> None:
        self.study_seed = int(study_seed)
        self._factory = factory
        self._per_trial: dict[int, BaseSampler] = {}
        self._lock = threading.Lock()

    def _for(self, trial: FrozenTrial) -> BaseSampler:
        with self._lock:
            sampler = self._per_trial.get(trial.number)
            if sampler is None:
                sampler = self._factory(stream_seed(self.study_seed, trial.number))
                self._per_trial[trial.number] = sampler
            return sampler

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._for(trial).before_trial(study, trial)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values) -> None:
        try:
            self._for(trial).after_trial(study, trial, state, values)
        finally:
            with self._lock:
                self._per_trial.pop(trial.number, None)

    def reseed_rng(self) -> None:  # streams are keyed, never reseeded at random
        return None


def sampler_factory(sampler_cfg: dict) -> SamplerFactory:
    """``factory(seed)`` for a study file's ``sampler:`` block (tpe | random)."""
    if sampler_cfg["name"] == "random":
        return lambda seed: optuna.samplers.RandomSampler(seed=seed)
    startup = sampler_cfg.get("n_startup_trials", 10)
    multivariate = sampler_cfg.get("multivariate", True)
    return lambda seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=multivariate)


def stream_sampler(spec) -> StreamSampler:
    """The sweep's sampler for a StudySpec: one keyed stream per trial under the study's sampler seed."""
    return StreamSampler(int(spec.sampler["seed"]), sampler_factory(spec.sampler))


def history_free_trials(spec) -> float:
    """While fewer trials than this are COMPLETE or PRUNED, the study reads no history: its sampler draws
    trial n at random from n's own stream (TPE's ``n_startup_trials``; a random sampler always), and its
    pruner prunes nothing (``MedianPruner.n_startup_trials``, counting COMPLETE trials; none for a
    multi-objective study). A trial asked then has the same parameters, and the same pruning, whichever
    earlier trials are already told: the sweep's trial loop need not wait for them (tuning.sweep.workers)."""
    limit = math.inf if spec.sampler["name"] == "random" else int(spec.sampler.get("n_startup_trials", 10))
    pruner = spec.pruner or {"name": "none"}
    if not spec.multi_objective and pruner["name"] != "none":
        limit = min(limit, int(pruner.get("n_startup_trials", 5)))
    return limit
