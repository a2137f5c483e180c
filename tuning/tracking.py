"""The MLflow decision trail: one experiment per phase, one parent run per sweep invocation, one
nested run per Optuna trial.

Tracking URI: ``MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlruns/mlflow.db``; for a sqlite store
the artifacts live under ``<db dir>/artifacts/<experiment>``. Logging is batched: a trial is one
``create_run`` + one ``log_batch`` + one ``log_artifacts`` + ``set_terminated``.

A trial's nested run is keyed by ``trial_key`` = ``<study>#<original trial number>``; a retried
trial (its first attempt died with its process) deletes the attempt's run and logs afresh, and at the
end of a sweep every COMPLETE trial's key keeps only the run Optuna recorded (an HTTP retry of
``create_run`` against a tracking server can create one twice), so the trail never holds two runs for
one trial.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import time
import warnings
from pathlib import Path
from typing import Iterable, Mapping

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from tuning.objective import Evaluation
from tuning.store_init import ensure_store

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # a server prints run URLs to stdout
# a tracking server: transient errors (connection refused/reset, 408/429/5xx) are retried with backoff;
# MLflow's default (7 retries, factor 2, 120 s timeout) can stall a worker ~4 min per call. An operator's
# own values win.
for _var, _value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "6"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
                     ("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")):
    os.environ.setdefault(_var, _value)
logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)

RUN_KIND_TRIAL, RUN_KIND_SWEEP = "trial", "sweep"
AUTHORITY_EXPERIMENT = "authority"
CERTIFY_EXPERIMENT = "3A-certify"
# MLflow 3 opens an untagged experiment in GenAI mode (traces); these are model-training experiments
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
_BATCH_METRICS, _BATCH_TAGS = 900, 90


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    db = Path.cwd() / "mlruns" / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def artifact_root(uri: str) -> Path | None:
    """``<db dir>/artifacts`` for a sqlite store; None lets a tracking server choose."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).resolve().parent / "artifacts"
    if uri.startswith("file:") or "://" not in uri:
        return None
    return None


def client() -> MlflowClient:
    uri = tracking_uri()
    ensure_store(uri)  # created and migrated once, under a lock (tuning.store_init)
    return MlflowClient(uri)


def set_experiment_tag_once(mlc: MlflowClient, experiment_id_: str, key: str, value: str) -> None:
    """Set an experiment tag when several processes may set the same one at the same moment: on a
    database store the loser of that race gets a unique-key violation, which is success if the tag
    now holds the value (a real failure is retried, then raised)."""
    for attempt in range(4):
        try:
            mlc.set_experiment_tag(experiment_id_, key, value)
            return
        except MlflowException:
            if mlc.get_experiment(experiment_id_).tags.get(key) == value:
                return
            if attempt == 3:
                raise
            time.sleep(0.2 * (attempt + 1))


def experiment_id(mlc: MlflowClient, name: str) -> str:
    """Get or create the experiment (safe when several workers race to create it)."""
    for _ in range(5):
        exp = mlc.get_experiment_by_name(name)
        if exp is not None:
            for key, value in EXPERIMENT_KIND.items():
                if exp.tags.get(key) != value:
                    set_experiment_tag_once(mlc, exp.experiment_id, key, value)
            return exp.experiment_id
        root = artifact_root(mlc.tracking_uri)
        location = (root / name).as_uri() if root is not None else None
        _tag_default_experiment(mlc)
        try:
            return mlc.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)
        except MlflowException:
            time.sleep(0.2)
    raise MlflowException(f"cannot create experiment {name}")


def _tag_default_experiment(mlc: MlflowClient) -> None:
    """The store's own "Default" experiment opens as a model-training experiment too."""
    default = mlc.get_experiment_by_name("Default")
    if default is not None and default.tags.get("mlflow.experimentKind") != EXPERIMENT_KIND["mlflow.experimentKind"]:
        set_experiment_tag_once(mlc, default.experiment_id, "mlflow.experimentKind",
                                EXPERIMENT_KIND["mlflow.experimentKind"])


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


def gate_table_md(gates: Mapping) -> str:
    lines = ["| family | gate | metric | value | op | threshold | status |", "|---|---|---|---|---|---|---|"]
    for family in ("hard", "stretch", "fidelity"):
        for gid, g in (gates or {}).get(family, {}).items():
            lines.append(f"| {family} | {gid} | {g['metric']} | {g['value']} | {g['op']} | {g['threshold']} "
                         f"| {g['status']} |")
    return "\n".join(lines) + "\n"


def evaluation_doc(ev: Evaluation) -> dict:
    """The metric-pack JSON artifact of a trial (promotion replays it)."""
    return {"identity": ev.identity, "knobs": ev.knobs, "J": ev.value, "deltas": ev.deltas,
            "vetoes": ev.vetoes, "veto_detail": ev.veto_detail, "constraints": ev.constraints,
            "targets": ev.targets, "verdict": ev.verdict, "s6_overall_status": ev.s6_status,
            "s7_status": ev.s7_status, "realism_floors": ev.floors, "seconds": ev.seconds,
            "reused": ev.reused, "error": ev.error, "pack": ev.pack, "gates": ev.gates,
            "fidelity_verdict": ev.fidelity, "second_objective": ev.second_value,
            "seeds": ev.seeds, "seed_values": ev.seed_values,
            "per_seed": [{"seed": s, "J": e.value, "identity": e.identity, "pack": e.pack, "verdict": e.verdict,
                          "fidelity_verdict": e.fidelity, "vetoes": e.vetoes}
                         for s, e in zip(ev.seeds, ev.per_seed)]}


def evaluation_tags(ev: Evaluation, phase: str) -> dict[str, str]:
    tags = {"phase": phase, "veto": "PASS" if ev.feasible else "FAIL",
            "veto_reasons": ",".join(ev.vetoes) or "none", "verdict": ev.verdict, "fidelity": ev.fidelity,
            "seeds": ",".join(map(str, ev.seeds)),
            "s6_status": ev.s6_status, "s7_status": ev.s7_status}
    ident = ev.identity
    if ident:
        tags.update({"engine_run_id": ident["run_id"], "seed": str(ident["seed"]),
                     "parameter_hash": ident["parameter_hash"],
                     "manifest_fingerprint": ident["manifest_fingerprint"], "world_digest": ident["world_digest"]})
    digests = ident.get("policy_digests") or (ev.policies.digests if ev.policies is not None else {})
    tags.update({f"digest.{pid}": d for pid, d in digests.items()})
    if ev.targets:
        tags["target_pass"] = str(ev.target_pass).lower()
    return tags


def evaluation_metrics(ev: Evaluation, objective_name: str) -> dict[str, float]:
    m = {"J": ev.value, objective_name: ev.value, "feasible": 1.0 if ev.feasible else 0.0,
         **({"second_objective": ev.second_value} if ev.second_value is not None else {}),
         # J of a feasible trial only: sorting by it (descending) lists feasible trials by J, vetoed ones last
         **({"J_feasible": ev.value} if ev.feasible else {}),
         "seconds.chain": ev.chain_seconds, "seconds.candidate_build": ev.build_seconds}
    m.update({f"delta.{k}": v for k, v in ev.deltas.items()})
    m.update({f"constraint.{k}": v for k, v in ev.constraints.items()})
    m.update({f"seconds.{k}": v for k, v in ev.seconds.items()})
    if ev.pack is not None:
        m.update(flatten_pack(ev.pack))
    for family in ("hard", "stretch", "fidelity"):
        block = (ev.gates or {}).get(family, {})
        m[f"gates.{family}_passed"] = float(sum(g["status"] == "PASS" for g in block.values()))
        for gid, g in block.items():
            m[f"gate.{gid}"] = 1.0 if g["status"] == "PASS" else 0.0
    return m


HISTORY_METRICS = ("s2.top1_share_median_multi_tz", "s3.merchant_share_std_median", "s4.escalated_multi_zone_rate",
                   "s4.top1_share_median", "fidelity.prior_jsd_mean", "fidelity.realised_jsd_mean",
                   "fidelity.unpopulated_share")


def per_seed_history(ev: Evaluation) -> list[Metric]:
    """``seed.J`` and a few gate metrics per seed, step = the seed's index in the study's seed list."""
    now, out = int(time.time() * 1000), []
    for step, (seed, e) in enumerate(zip(ev.seeds, ev.per_seed)):
        values = {"seed.J": e.value, "seed.value": float(seed)}
        flat = flatten_pack(e.pack) if e.pack is not None else {}
        values.update({f"seed.{k}": flat[k] for k in HISTORY_METRICS if k in flat})
        out += [Metric(k, float(v), now, step) for k, v in values.items() if v == v]
    return out


def write_evaluation_artifacts(ev: Evaluation, directory: Path) -> None:
    if ev.policies is not None:
        ev.policies.write(directory / "policies")
    (directory / "metric_pack.json").write_text(json.dumps(evaluation_doc(ev), indent=2, sort_keys=True,
                                                           default=str))
    (directory / "gate_table.md").write_text(gate_table_md(ev.gates))


def log_batch(mlc: MlflowClient, run_id: str, metrics: Mapping[str, float] = {}, params: Mapping = {},
              tags: Mapping[str, str] = {}) -> None:
    """One or a few ``log_batch`` calls (MLflow caps a batch at 1000 metrics / 100 tags / 100 params)."""
    now = int(time.time() * 1000)
    ms = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v == v and abs(float(v)) != float("inf")]
    ps = [Param(k, str(v)) for k, v in params.items()]
    ts = [RunTag(k, str(v)[:5000]) for k, v in tags.items()]
    first = True
    while first or ms or ts:
        mlc.log_batch(run_id, metrics=ms[:_BATCH_METRICS], params=ps if first else [], tags=ts[:_BATCH_TAGS])
        ms, ts, first = ms[_BATCH_METRICS:], ts[_BATCH_TAGS:], False


def worker_identity() -> dict[str, str]:
    return {"host": socket.gethostname(), "pid": str(os.getpid())}


class SweepTracker:
    """Parent run of one sweep invocation and the nested run of each trial."""

    def __init__(self, phase: str, study_name: str, objective_name: str, parent_run_id: str | None = None):
        self.mlc = client()
        self.phase, self.study_name, self.objective_name = phase, study_name, objective_name
        self.experiment_id = experiment_id(self.mlc, f"3A-{phase}")
        self.parent_run_id = parent_run_id

    def start_parent(self, params: Mapping, tags: Mapping[str, str]) -> str:
        self.close_dead_parents()
        run = self.mlc.create_run(self.experiment_id, run_name=f"sweep-{self.study_name}",
                                  tags={"run_kind": RUN_KIND_SWEEP, "phase": self.phase, "study": self.study_name,
                                        **worker_identity(), **tags})
        self.parent_run_id = run.info.run_id
        log_batch(self.mlc, self.parent_run_id, params=params)
        return self.parent_run_id

    def close_dead_parents(self) -> None:
        """Sweep runs of this study left RUNNING by a killed process on this host become KILLED."""
        from tuning.trial_recovery import process_alive
        me = worker_identity()
        runs = self.mlc.search_runs([self.experiment_id], f"tags.run_kind = '{RUN_KIND_SWEEP}' and "
                                    f"tags.study = '{self.study_name}' and attributes.status = 'RUNNING'")
        for run in runs:
            t = run.data.tags
            if t.get("host") == me["host"] and t.get("pid", "").isdigit() and not process_alive(int(t["pid"])):
                self.mlc.set_terminated(run.info.run_id, status="KILLED")

    def trial_key(self, original_number: int) -> str:
        return f"{self.study_name}#{original_number}"

    def find_trial_runs(self, key: str) -> list:
        return list(self.mlc.search_runs([self.experiment_id], f"tags.trial_key = '{key}'"))

    def log_trial(self, number: int, original_number: int, ev: Evaluation, params: Mapping,
                  extra_metrics: Mapping[str, float] = {}) -> str:
        key = self.trial_key(original_number)
        if original_number != number:  # a retry replaces whatever its dead attempt left behind
            for old in self.find_trial_runs(key):
                self.mlc.delete_run(old.info.run_id)
        tags = {"run_kind": RUN_KIND_TRIAL, "study": self.study_name, "optuna_trial": str(number),
                "trial_key": key, **evaluation_tags(ev, self.phase)}
        if original_number != number:
            tags["retry_of"] = str(original_number)
        if self.parent_run_id:  # not mlflow.parentRunId: the UI would fold every trial under the sweep run
            tags["sweep_run_id"] = self.parent_run_id
        if ev.veto_detail:
            tags["veto_detail"] = " | ".join(ev.veto_detail)[:5000]
        run = self.mlc.create_run(self.experiment_id, run_name=f"trial-{number:04d}", tags=tags)
        run_id = run.info.run_id
        log_batch(self.mlc, run_id, {**evaluation_metrics(ev, self.objective_name), **extra_metrics}, params)
        history = per_seed_history(ev)
        for i in range(0, len(history), _BATCH_METRICS):
            self.mlc.log_batch(run_id, metrics=history[i:i + _BATCH_METRICS])
        with tempfile.TemporaryDirectory(prefix="trial-") as tmp:
            write_evaluation_artifacts(ev, Path(tmp))
            self.mlc.log_artifacts(run_id, tmp)
        self.mlc.set_terminated(run_id)
        return run_id

    def reconcile_trial_runs(self, study) -> int:
        """After a sweep: a trial key whose trial is COMPLETE keeps only the run Optuna recorded; any other run
        of that key (an HTTP retry of ``create_run`` against a tracking server, a stale attempt) is deleted."""
        from optuna.trial import TrialState

        keep = {(t.user_attrs.get("result") or {}).get("mlflow_run_id")
                for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
        runs = self.trial_runs()
        done_keys = {r.data.tags.get("trial_key") for r in runs if r.info.run_id in keep}
        extra = [r for r in runs if r.data.tags.get("trial_key") in done_keys and r.info.run_id not in keep]
        for r in extra:
            self.mlc.delete_run(r.info.run_id)
        return len(extra)

    def trial_runs(self) -> list:
        return search_all(self.mlc, [self.experiment_id], f"tags.run_kind = '{RUN_KIND_TRIAL}' and "
                          f"tags.study = '{self.study_name}'")

    def finish_parent(self, study, summary: Mapping, status: str = "FINISHED") -> None:
        if not self.parent_run_id:
            return
        with tempfile.TemporaryDirectory(prefix="sweep-") as tmp:
            write_study_plots(study, Path(tmp))
            (Path(tmp) / "sweep_summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
            self.mlc.log_artifacts(self.parent_run_id, tmp)
        best = summary.get("best") or {}
        log_batch(self.mlc, self.parent_run_id,
                  metrics={"trials_complete": summary.get("trials_complete", 0),
                           "trials_feasible": summary.get("trials_feasible", 0),
                           **({"best_J": best["J"]} if "J" in best else {})},
                  tags={"best_trial": str(best.get("trial", "")), "best_run_id": best.get("run_id", "")})
        self.mlc.set_terminated(self.parent_run_id, status=status)


def search_all(mlc: MlflowClient, experiment_ids: Iterable[str], filter_string: str,
               order_by: list[str] | None = None) -> list:
    runs, token = [], None
    while True:
        page = mlc.search_runs(list(experiment_ids), filter_string, max_results=1000, order_by=order_by,
                               page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def write_study_plots(study, directory: Path) -> list[str]:
    """Optuna plots as self-contained HTML (plotly.js inline: they render offline); importances only with
    >= 2 complete trials that vary."""
    import optuna.visualization as vis
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not done:
        return []
    plots = {"optimization_history": vis.plot_optimization_history, "parallel_coordinate": vis.plot_parallel_coordinate}
    if len(done) >= 2 and len({t.values[0] for t in done}) > 1 and any(len({str(t.params.get(p)) for t in done}) > 1
                                                                      for p in done[-1].params):
        plots["param_importances"] = vis.plot_param_importances
    # a multi-objective study is plotted on J, its first objective (the Pareto plot shows both)
    on_j = {"target": lambda t: t.values[0], "target_name": "J"} if len(study.directions) > 1 else {}
    if on_j:
        # importances on a custom target are computed for *low* values (PED-ANOVA): rank -J instead
        importances = {"target": lambda t: -t.values[0], "target_name": "-J"}
    written = []
    for name, fn in plots.items():
        try:
            kwargs = importances if on_j and name == "param_importances" else on_j
            with warnings.catch_warnings():  # PED-ANOVA warns on every custom target; -J is the intended one
                warnings.filterwarnings("ignore", message=".*computes the importances of params.*")
                fig = fn(study, **kwargs)
            fig.write_html(str(directory / f"{name}.html"), include_plotlyjs=True)
            written.append(name)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # a plot never fails a sweep
            (directory / f"{name}.txt").write_text(f"plot unavailable: {exc}\n")
    return written
