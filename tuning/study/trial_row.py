"""One typed row per trial: :class:`TrialRow`, what every ranking, table and JSON of trials is made of.

A trial is recorded once (:class:`tuning.study.trial_result.TrialResult`); its row is the part that ranks and
shows it, built from wherever the trial is read:

- :meth:`TrialRow.from_result`: from the record itself (what the Optuna user attribute ``result`` and the
  MLflow run's row tags and metrics are written from: :meth:`user_attr`, :meth:`run_tags`, :meth:`run_metrics`);
- :meth:`TrialRow.from_trial`: from an Optuna trial (its user attribute ``result``, values and parameters):
  the sweep's summary and the campaign's candidate selection;
- :meth:`TrialRow.from_mlflow_run`: from the trial's MLflow run (``tuning.rank``, ``tuning.prune``); the
  columns of the MLflow UI's ``rank`` view are the same fields (:func:`mlflow_column`).

Feasibility is one bool (``feasible``; ``veto`` is its PASS/FAIL spelling in the trail), knob values one
mapping (``knobs``), and the two run ids have distinct names: ``engine_run_id`` (the engine's run of the
trial's first seed) and ``mlflow_run_id`` (the trial's MLflow run). ``J`` and ``metrics`` are means over the
trial's seeds; ``worst_J`` and ``worst`` the worst seed's values (:mod:`tuning.study.seed_robust`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

RESULT_ATTR = "result"  # the Optuna user attribute of a trial's record (one journal write per trial)

# where each field of a row lives on its MLflow trial run (tags and metrics): read by from_mlflow_run, and
# the columns of the UI's rank view (tuning.trail.ui_view)
MLFLOW_TAGS = {"feasible": "veto", "vetoes": "veto_reasons", "verdict": "verdict", "fidelity": "fidelity",
               "engine_run_id": "engine_run_id", "study": "study", "trial": "optuna_trial", "seeds": "seeds",
               "target_pass": "target_pass", "world": "world", "world_name": "world_name",
               "authority": "authority", "pareto": "pareto", "seed_values": "seed_values"}
TAG_MAX_CHARS = 5000   # MLflow's limit on a tag value
MLFLOW_METRICS = {"J": "J", "worst_J": "worst.J", "second": "second_objective"}


def mlflow_column(name: str) -> str:
    """The MLflow runs-table column of a row field, or of a metric (``worst.<metric>`` included) by its name."""
    if name in MLFLOW_TAGS:
        return f"tags.`{MLFLOW_TAGS[name]}`"
    return f"metrics.`{MLFLOW_METRICS.get(name, name)}`"


def _floats(values) -> dict:
    return {k: (None if v is None else float(v)) for k, v in (values or {}).items()}



class Outcome:
    """What a scored candidate's ``vetoes`` and ``targets`` say, for every record that carries them
    (:class:`tuning.study.objective.Evaluation`, :class:`tuning.study.trial_result.TrialResult`)."""

    vetoes: Sequence[str]
    targets: Mapping[str, bool]

    @property
    def feasible(self) -> bool:
        return not self.vetoes

    @property
    def target_pass(self) -> bool:
        return all(self.targets.values())

@dataclass(frozen=True)
class TrialRow:
    """One trial as it ranks and shows. ``trial`` is None for a record not yet given its Optuna trial number."""

    trial: int | None
    J: float | None
    feasible: bool
    vetoes: tuple[str, ...] = ()
    # knob values: an Optuna trial's searched ones (its params; the fixed ones are the study's), a record's all of
    # them, an MLflow run's all of them as MLflow's text (its params)
    knobs: Mapping[str, Any] = field(default_factory=dict)
    worst_J: float | None = None
    second: float | None = None          # the second objective of a two-objective study
    verdict: str | None = None
    fidelity: str | None = None
    target_pass: bool = True             # the study's targets hold on every seed (vacuously without targets)
    seeds: tuple[int, ...] = ()
    seed_values: tuple[float, ...] = ()
    metrics: Mapping[str, float | None] = field(default_factory=dict)   # key metrics, mean over the seeds
    worst: Mapping[str, float] = field(default_factory=dict)            # key metrics, the worst seed's
    engine_run_id: str | None = None
    mlflow_run_id: str | None = None
    study: str | None = None
    world: str = ""
    world_name: str = ""
    authority: str = ""                  # the authority tag of a promoted trial's run
    pareto: bool | None = None           # on the feasible Pareto front (two-objective studies)

    @property
    def veto(self) -> str:
        """Feasibility as the trail spells it: ``PASS`` | ``FAIL``."""
        return "PASS" if self.feasible else "FAIL"

    def with_(self, **changes) -> "TrialRow":
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ from the record
    @classmethod
    def from_result(cls, result, key_metrics: Sequence[str] = (), trial: int | None = None,
                    study: str | None = None) -> "TrialRow":
        """The row of a :class:`~tuning.study.trial_result.TrialResult`."""
        return cls(trial=trial, J=result.J, feasible=result.feasible, vetoes=tuple(result.vetoes),
                   knobs=dict(result.knobs), worst_J=min(result.seed_values) if result.seed_values else None,
                   second=result.second, verdict=result.verdict, fidelity=result.fidelity,
                   target_pass=result.target_pass, seeds=tuple(result.seeds), seed_values=tuple(result.seed_values),
                   metrics={m: result.key_metric(m) for m in key_metrics},
                   worst={m: result.worst_pack[m] for m in key_metrics if m in result.worst_pack},
                   engine_run_id=result.identity.get("run_id"), mlflow_run_id=result.mlflow_run_id, study=study,
                   world=result.world.get("fingerprint", ""), world_name=result.world.get("name", ""))

    # ------------------------------------------------------------------ Optuna
    def user_attr(self) -> dict:
        """The row's part of the Optuna user attribute ``result`` (its keys are a persisted format: a resumed
        study reads what earlier versions wrote)."""
        return {"mlflow_run_id": self.mlflow_run_id, "veto": self.veto, "veto_reasons": list(self.vetoes),
                "engine_run_id": self.engine_run_id, "verdict": self.verdict, "fidelity": self.fidelity,
                "seeds": list(self.seeds), "seed_values": list(self.seed_values), "second": self.second,
                "target_pass": self.target_pass, "metrics": dict(self.metrics), "worst": dict(self.worst),
                "world": self.world, "world_name": self.world_name}

    @classmethod
    def from_user_attr(cls, attrs: Mapping | None, trial: int | None = None, values: Sequence[float] | None = None,
                       knobs: Mapping | None = None, study: str | None = None) -> "TrialRow":
        """What :meth:`user_attr` wrote, with the trial's number, values (J, and the second objective of a
        two-objective study) and parameters; a trial without a record counts as vetoed."""
        a = dict(attrs or {})
        seed_values = tuple(float(v) for v in a.get("seed_values") or ())
        second = values[1] if values and len(values) > 1 else a.get("second")
        return cls(trial=trial, J=values[0] if values else None, feasible=a.get("veto", "FAIL") == "PASS",
                   vetoes=tuple(a.get("veto_reasons") or ()), knobs=dict(knobs or {}),
                   worst_J=min(seed_values) if seed_values else None, second=second, verdict=a.get("verdict"),
                   fidelity=a.get("fidelity"), target_pass=bool(a.get("target_pass", True)),
                   seeds=tuple(int(s) for s in a.get("seeds") or ()), seed_values=seed_values,
                   metrics=dict(a.get("metrics") or {}), worst=dict(a.get("worst") or {}),
                   engine_run_id=a.get("engine_run_id"), mlflow_run_id=a.get("mlflow_run_id"), study=study,
                   world=a.get("world") or "", world_name=a.get("world_name") or "")

    @classmethod
    def from_trial(cls, trial, study: str | None = None) -> "TrialRow":
        """The row of an Optuna (frozen) trial: its record, its values and its searched parameters."""
        return cls.from_user_attr(trial.user_attrs.get(RESULT_ATTR), trial.number, trial.values,
                                  dict(trial.params), study)

    # ------------------------------------------------------------------ MLflow
    def run_tags(self) -> dict[str, str]:
        """The row's tags on its MLflow trial run (the record adds the rest)."""
        tags = {"veto": self.veto, "veto_reasons": ",".join(self.vetoes) or "none", "verdict": str(self.verdict),
                "fidelity": str(self.fidelity), "seeds": ",".join(map(str, self.seeds))}
        if self.engine_run_id:
            tags["engine_run_id"] = self.engine_run_id
        values = ",".join(repr(float(v)) for v in self.seed_values)   # exact: read back by from_mlflow_run
        if values and len(values) <= TAG_MAX_CHARS:
            tags["seed_values"] = values
        return tags

    def run_metrics(self) -> dict[str, float]:
        """The row's metrics on its MLflow trial run; ``J_feasible`` (J of a feasible trial only) is what the UI's
        rank view sorts by: feasible trials by J, vetoed ones last."""
        m = {"J": self.J, "feasible": 1.0 if self.feasible else 0.0,
             **({"second_objective": self.second} if self.second is not None else {}),
             **({"J_feasible": self.J} if self.feasible else {})}
        if self.worst_J is not None:
            m["worst.J"] = self.worst_J
        return m

    @classmethod
    def from_mlflow_run(cls, run, key_metrics: Sequence[str] = ()) -> "TrialRow":
        """The row of a trial's MLflow run (its tags, metrics and params; params are MLflow's text)."""
        t, m = run.data.tags, run.data.metrics
        tag = {f: t.get(name) for f, name in MLFLOW_TAGS.items()}
        reasons = tag["vetoes"] or "none"
        return cls(trial=int(tag["trial"] if tag["trial"] is not None else -1), J=m.get("J"),
                   feasible=tag["feasible"] == "PASS",
                   vetoes=() if reasons == "none" else tuple(reasons.split(",")), knobs=dict(run.data.params),
                   worst_J=m.get("worst.J"), second=m.get("second_objective"), verdict=tag["verdict"],
                   fidelity=tag["fidelity"], target_pass=tag["target_pass"] != "false",
                   seeds=tuple(int(s) for s in (tag["seeds"] or "").split(",") if s),
                   seed_values=tuple(float(v) for v in (tag["seed_values"] or "").split(",") if v),
                   metrics={k: m.get(k) for k in key_metrics},
                   worst={k: m[f"worst.{k}"] for k in key_metrics if f"worst.{k}" in m},
                   engine_run_id=tag["engine_run_id"], mlflow_run_id=run.info.run_id, study=tag["study"],
                   world=tag["world"] or "", world_name=tag["world_name"] or "", authority=tag["authority"] or "",
                   pareto=None if tag["pareto"] is None else tag["pareto"] == "true")

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict:
        """The row as JSON (``tuning.rank --json``, the sweep's summary): its fields by name."""
        doc = dataclasses.asdict(self)
        doc.update(vetoes=list(self.vetoes), seeds=list(self.seeds), seed_values=list(self.seed_values),
                   knobs=dict(self.knobs), metrics=_floats(self.metrics), worst=_floats(self.worst))
        return doc

    @classmethod
    def from_json(cls, doc: Mapping) -> "TrialRow":
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in doc.items() if k in names}
        return cls(**{**d, "vetoes": tuple(d.get("vetoes") or ()), "seeds": tuple(d.get("seeds") or ()),
                      "seed_values": tuple(d.get("seed_values") or ())})
