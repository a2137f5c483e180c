"""One record per trial: :class:`TrialResult`.

Built once from the trial's :class:`~tuning.study.objective.Evaluation`, it is the single source of what a
trial leaves behind:

- its row (:meth:`TrialResult.row`, a :class:`~tuning.study.trial_row.TrialRow`: what ranks and shows it), which
  writes the Optuna user attribute ``result`` (:meth:`TrialResult.user_attr`; read back as a row by
  :meth:`TrialRow.from_trial <tuning.study.trial_row.TrialRow.from_trial>`) and the row's tags and metrics of
  the MLflow run;
- the MLflow run: tags (:meth:`tags`), metrics (:meth:`metrics`, :meth:`history`); its params are the knob
  values (``knobs``), logged by the trail process;
- the per-trial JSON artifact ``metric_pack.json`` (:meth:`artifact_doc`; promotion replays its per-seed
  packs).

A K-seed trial's metrics mean what J and the verdict beside them mean: every pack metric is the mean over
the seeds under its own name and the worst seed's value as ``worst.<metric>`` (directions:
:mod:`tuning.study.seed_robust`), ``gate.<id>`` is the worst seed's pass or fail; each seed's values stay in the
step history (``seed.<metric>``, step = the seed's index) and in ``metric_pack.json``'s ``per_seed``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from tuning.study.trial_row import (RESULT_ATTR, Outcome,  # noqa: F401 (RESULT_ATTR: the record's user attribute)
                                    TrialRow)

HISTORY_METRICS = ("s2.top1_share_median_multi_tz", "s3.merchant_share_std_median", "s4.escalated_multi_zone_rate",
                   "s4.top1_share_median", "fidelity.prior_jsd_mean", "fidelity.realised_jsd_mean",
                   "fidelity.unpopulated_share")
GATE_FAMILIES = ("hard", "stretch", "fidelity")


def flatten_pack(pack: Mapping, prefix: str = "") -> dict[str, float]:
    """Scalar leaves of a metric pack as ``family.key`` -> float (bools 0/1; lists skipped)."""
    out: dict[str, float] = {}
    for key, value in pack.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_pack(value, name + "."))
        elif isinstance(value, bool):
            out[name] = 1.0 if value else 0.0
        elif isinstance(value, (int, float)) and value == value:
            out[name] = float(value)
        elif hasattr(value, "item"):
            out[name] = float(value.item())
    return out


def _gate_metrics(gates: Mapping | None) -> dict[str, float]:
    m: dict[str, float] = {}
    for family in GATE_FAMILIES:
        block = (gates or {}).get(family, {})
        m[f"gates.{family}_passed"] = float(sum(g["status"] == "PASS" for g in block.values()))
        for gid, g in block.items():
            m[f"gate.{gid}"] = 1.0 if g["status"] == "PASS" else 0.0
    return m


def _seed_doc(seed: int, e) -> dict:
    return {"seed": seed, "J": e.value, "identity": e.identity, "pack": e.pack, "verdict": e.verdict,
            "fidelity_verdict": e.fidelity, "vetoes": e.vetoes}


@dataclass(frozen=True)
class TrialResult(Outcome):
    """Everything one trial recorded. ``mlflow_run_id`` is set once its MLflow run exists
    (:meth:`with_run`)."""

    phase: str
    objective_name: str
    knobs: Mapping
    J: float
    second: float | None
    vetoes: tuple[str, ...]
    veto_detail: tuple[str, ...]
    constraints: Mapping[str, float]
    targets: Mapping[str, bool]
    verdict: str
    fidelity: str
    s6_status: str
    s7_status: str
    identity: Mapping
    policy_digests: Mapping[str, str]
    seeds: tuple[int, ...]
    seed_values: tuple[float, ...]
    deltas: Mapping[str, float]
    seconds: Mapping[str, float]
    chain_seconds: float
    build_seconds: float
    flat_pack: Mapping[str, float]         # the metric pack flattened (family.key -> float), mean over the seeds
    worst_pack: Mapping[str, float] = field(default_factory=dict)   # the worst seed's value of each judged metric
    gates: Mapping | None = None           # the worst seed's gate table (tuning.study.seed_robust.worst_gates)
    floors: Mapping | None = None
    reused: tuple[str, ...] = ()
    error: str | None = None
    per_seed: tuple[Mapping, ...] = ()    # per-seed docs: seed, J, identity, pack, verdicts, vetoes
    seed_flat: tuple[Mapping, ...] = ()   # per-seed flattened packs (history metrics)
    extra_metrics: Mapping[str, float] = field(default_factory=dict)
    mlflow_run_id: str | None = None
    log_seconds: float | None = None      # what writing its MLflow run took (the trail process's log_trial)
    world: Mapping[str, str] = field(default_factory=dict)   # the world's fingerprint and name (tuning.common.worlds)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_evaluation(cls, ev, phase: str, objective_name: str, extra_metrics: Mapping[str, float] | None = None,
                        directions: Mapping[str, str] | None = None,
                        world: Mapping[str, str] | None = None) -> "TrialResult":
        """The record of a (seed-robust) evaluation; ``directions``: the study's own metric directions
        (:func:`tuning.study.seed_robust.study_directions`) for metrics without a gate; ``world``: what it records of
        its world (:func:`tuning.common.worlds.record`)."""
        from tuning.study.seed_robust import metric_directions, seed_metrics

        ident = dict(ev.identity or {})
        digests = ident.get("policy_digests") or (ev.policies.digests if ev.policies is not None else {})
        per_seed = ev.per_seed or ([ev] if ev.pack is not None else [])
        seed_flat = tuple(flatten_pack(e.pack) if e.pack is not None else {} for e in per_seed)
        judged = metric_directions([e.gates for e in per_seed if e.gates], directions)
        mean, worst = seed_metrics([f for f in seed_flat if f], judged)
        return cls(
            phase=phase, objective_name=objective_name, knobs=dict(ev.knobs), J=float(ev.value),
            second=ev.second_value, vetoes=tuple(ev.vetoes), veto_detail=tuple(ev.veto_detail),
            constraints=dict(ev.constraints), targets=dict(ev.targets), verdict=ev.verdict, fidelity=ev.fidelity,
            s6_status=ev.s6_status, s7_status=ev.s7_status, identity=ident, policy_digests=dict(digests),
            seeds=tuple(int(s) for s in ev.seeds), seed_values=tuple(float(v) for v in ev.seed_values),
            deltas=dict(ev.deltas), seconds=dict(ev.seconds), chain_seconds=float(ev.chain_seconds),
            build_seconds=float(ev.build_seconds),
            flat_pack=mean, worst_pack=worst, gates=ev.gates, floors=ev.floors, reused=tuple(ev.reused),
            error=ev.error, per_seed=tuple(_seed_doc(s, e) for s, e in zip(ev.seeds, per_seed)),
            seed_flat=seed_flat, extra_metrics=dict(extra_metrics or {}), world=dict(world or {}))

    def with_run(self, run_id: str, log_seconds: float | None = None) -> "TrialResult":
        return dataclasses.replace(self, mlflow_run_id=run_id, log_seconds=log_seconds)


    def key_metric(self, name: str) -> float | None:
        """A metric's mean over the seeds (None when the trial has no such metric)."""
        return self.flat_pack.get(name)

    def row(self, key_metrics: Sequence[str] = (), trial: int | None = None, study: str | None = None) -> TrialRow:
        """The trial's row (:class:`~tuning.study.trial_row.TrialRow`) with ``key_metrics``' means and worst values."""
        return TrialRow.from_result(self, key_metrics, trial, study)

    # ------------------------------------------------------------------ Optuna
    def user_attr(self, key_metrics: Sequence[str]) -> dict:
        """The Optuna user attribute ``result`` (one journal write): the row's, and what the trial's parts took."""
        return {**self.row(key_metrics).user_attr(), "chain_seconds": self.chain_seconds,
                "build_seconds": self.build_seconds, "log_seconds": self.log_seconds}

    # ------------------------------------------------------------------ MLflow
    def tags(self) -> dict[str, str]:
        tags = {"phase": self.phase, **self.row().run_tags(), "s6_status": self.s6_status, "s7_status": self.s7_status,
                "objective": self.objective_name}   # what J scores: tuning.rank never ranks two objectives together
        ident = self.identity
        if ident:
            tags.update({"seed": str(ident["seed"]),
                         "parameter_hash": ident["parameter_hash"],
                         "manifest_fingerprint": ident["manifest_fingerprint"], "world_digest": ident["world_digest"]})
        tags.update({f"digest.{pid}": d for pid, d in self.policy_digests.items()})
        if self.world:
            tags.update({"world": self.world["fingerprint"], "world_name": self.world["name"]})
        if self.targets:
            tags["target_pass"] = str(self.target_pass).lower()
        if self.veto_detail:
            tags["veto_detail"] = " | ".join(self.veto_detail)[:5000]
        return tags

    def metrics(self) -> dict[str, float]:
        m = {**self.row().run_metrics(), self.objective_name: self.J,
             "seconds.chain": self.chain_seconds, "seconds.candidate_build": self.build_seconds}
        m.update({f"delta.{k}": v for k, v in self.deltas.items()})
        m.update({f"constraint.{k}": v for k, v in self.constraints.items()})
        m.update({f"seconds.{k}": v for k, v in self.seconds.items()})
        m.update(self.flat_pack)
        m.update({f"worst.{k}": v for k, v in self.worst_pack.items()})
        m.update(_gate_metrics(self.gates))
        m.update(self.extra_metrics)
        return m

    def history(self) -> list[tuple[str, float, int]]:
        """``seed.J`` and a few gate metrics per seed as (key, value, step = the seed's index)."""
        out = []
        for step, (seed, value, flat) in enumerate(zip(self.seeds, self.seed_values, self.seed_flat)):
            values = {"seed.J": value, "seed.value": float(seed)}
            values.update({f"seed.{k}": flat[k] for k in HISTORY_METRICS if k in flat})
            out += [(k, float(v), step) for k, v in values.items() if v == v]
        return out

    # ------------------------------------------------------------------ artifact
    def artifact_doc(self) -> dict:
        """The per-trial ``metric_pack.json`` (promotion replays it)."""
        return {"identity": self.identity, "knobs": self.knobs, "J": self.J, "deltas": self.deltas,
                "vetoes": list(self.vetoes), "veto_detail": list(self.veto_detail), "constraints": self.constraints,
                "targets": self.targets, "verdict": self.verdict, "s6_overall_status": self.s6_status,
                "s7_status": self.s7_status, "realism_floors": self.floors, "seconds": self.seconds,
                "reused": list(self.reused), "error": self.error, "metrics": dict(self.flat_pack),
                "worst": dict(self.worst_pack), "gates": self.gates,
                "fidelity_verdict": self.fidelity, "second_objective": self.second,
                "seeds": list(self.seeds), "seed_values": list(self.seed_values), "per_seed": list(self.per_seed),
                "world": dict(self.world)}


@dataclass(frozen=True)
class PolicyFiles:
    """A candidate's policy files, exact bytes by policy id: what crosses to the MLflow trail process
    (:mod:`tuning.trail.process`) for the trial run's ``policies/`` artifact, without the engine's parsed
    documents."""

    raw: Mapping[str, bytes]

    @classmethod
    def of(cls, policies) -> "PolicyFiles | None":
        return None if policies is None else cls(dict(policies.raw))

    def write(self, directory: str | Path) -> None:
        """Each policy's exact bytes as ``<policy id>.yaml``, atomically per file (as ``PolicySet.write``)."""
        from engine import atomic_write

        for pid, data in self.raw.items():
            atomic_write(Path(directory) / f"{pid}.yaml", data)
