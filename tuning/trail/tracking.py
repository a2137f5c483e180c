"""The MLflow decision trail: one experiment per phase, one parent run per sweep invocation, one
run per Optuna trial (flat, not nested: its tag ``sweep_run_id`` names its sweep's parent run).

Tracking URI: ``MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlruns/mlflow.db``; for a sqlite store
the artifacts live under ``<db dir>/artifacts/<experiment>``. Logging is batched: a trial is one
``create_run`` + one ``log_batch`` + its artifacts + ``set_terminated`` (``tuning.study.trial_result``:
the one record behind the run, the Optuna attribute and the JSON artifact).

A trial's run is keyed by ``trial_key`` = ``<study>#<original trial number>``; a retried
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
from typing import Iterable, Mapping, Sequence

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException  # noqa: F401 - the one MLflow error the harness catches

from tuning.trail.store_init import default_uri, ensure_store, opened, readable_store_exists
from tuning.report.files import gate_table_md
from tuning.study.trial_result import TrialResult

RUN_KIND_TRIAL, RUN_KIND_SWEEP = "trial", "sweep"
AUTHORITY_EXPERIMENT = "authority"
RECONCILE_IN_MAX = 500   # recorded runs named in one reconcile search (an IN list that every SQL store takes)
CERTIFY_EXPERIMENT = "3A-certify"
# model-training experiments (what older MLflow 3 UIs choose their view by; 3.17 reads the address's
# workflowType instead: tuning/ui_view.py)
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def tracking_uri() -> str:
    """The store the environment names (:func:`tuning.trail.store_init.default_uri`); the working directory's
    ``mlruns/`` is made for it when that is the one."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        (Path.cwd() / "mlruns").mkdir(parents=True, exist_ok=True)
    return default_uri()


def artifact_root(uri: str) -> Path | None:
    """``<db dir>/artifacts`` for a sqlite store; None lets a tracking server choose."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).resolve().parent / "artifacts"
    if uri.startswith("file:") or "://" not in uri:
        return None
    return None


def configure() -> None:
    """The harness's MLflow settings, set once before its first client (never at import: importing a module
    changes no global state). An operator's own environment values win."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # a server prints run URLs to stdout
    # a tracking server: transient errors (connection refused/reset, 408/429/5xx) are retried with backoff;
    # MLflow's default (7 retries, factor 2, 120 s timeout) can stall a worker ~4 min per call
    for var, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "6"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
                       ("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")):
        os.environ.setdefault(var, value)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def client(uri: str | None = None) -> MlflowClient:
    """The MLflow client of this trail (``uri``: another store, e.g. a benchmark's own)."""
    configure()
    uri = uri or tracking_uri()
    ensure_store(uri)  # created and migrated once, under a lock (tuning.trail.store_init)
    return MlflowClient(uri)


def reader(uri: str | None = None) -> MlflowClient | None:
    """The MLflow client of a command that only reads (``rank``, ``verify_authority``): a sqlite store that exists is
    opened as it is, with no lock and no migration, so a store on a read-only mount is read; None where the named
    store does not exist yet (nothing is created to read it). A tracking server is :func:`client`'s."""
    configure()
    uri = uri or default_uri()
    if not uri.startswith("sqlite:///"):
        return client(uri)
    return opened(uri) if readable_store_exists(uri) else None


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


def write_evaluation_artifacts(result: TrialResult, policies, directory: Path) -> None:
    """The trial's artifacts: ``policies/`` (the candidate files), ``metric_pack.json``, ``gate_table.md``."""
    directory.mkdir(parents=True, exist_ok=True)
    if policies is not None:
        policies.write(directory / "policies")
    (directory / "metric_pack.json").write_text(json.dumps(result.artifact_doc(), indent=2, sort_keys=True,
                                                           default=str))
    (directory / "gate_table.md").write_text(gate_table_md(result.gates, detailed=True))


def local_artifact_dir(artifact_uri: str) -> Path | None:
    """The directory of a ``file:`` artifact location (None for a server-side or remote store)."""
    if artifact_uri.startswith("file:"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(artifact_uri).path))
    if artifact_uri.startswith("/"):  # a bare absolute path; "mlflow-artifacts:/..." (a server) is not local
        return Path(artifact_uri)
    return None


def artifact_repository(artifact_uri: str, tracking_uri: str):
    """The artifact repository of a run's ``artifact_uri`` (as the run's creation returned it): what
    ``MlflowClient.log_artifacts`` uses, without the ``get_run`` request it spends to find the location."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(artifact_uri, tracking_uri=tracking_uri)


def log_batch(mlc: MlflowClient, run_id: str, metrics: Mapping[str, float] = {}, params: Mapping = {},
              tags: Mapping[str, str] = {}, history: Sequence[tuple[str, float, int]] = ()) -> None:
    """One ``log_batch`` request (a few only when MLflow's own caps are passed, :func:`batches`); ``history``
    adds stepped metrics (key, value, step); non-finite values are left out."""
    now = int(time.time() * 1000)
    ms = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v == v and abs(float(v)) != float("inf")]
    ms += [Metric(k, float(v), now, step) for k, v, step in history if v == v and abs(float(v)) != float("inf")]
    ps = [Param(k, str(v)) for k, v in params.items()]
    ts = [RunTag(k, str(v)[:5000]) for k, v in tags.items()]
    for m, p, t in batches(ms, ps, ts):
        mlc.log_batch(run_id, metrics=m, params=p, tags=t)


def batches(metrics: list, params: list, tags: list) -> list[tuple[list, list, list]]:
    """(metrics, params, tags) split into as few batches as MLflow accepts (``mlflow.utils.validation``: at
    most 1000 metrics, 100 params, 100 tags and 1000 entities in all per request): one batch unless a cap is
    passed; always at least one."""
    from mlflow.utils.validation import MAX_ENTITIES_PER_BATCH, MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH

    out = []
    while metrics or params or tags or not out:
        p, t = params[:MAX_PARAMS_TAGS_PER_BATCH], tags[:MAX_PARAMS_TAGS_PER_BATCH]
        n = min(MAX_METRICS_PER_BATCH, MAX_ENTITIES_PER_BATCH - len(p) - len(t))
        out.append((metrics[:n], p, t))
        metrics, params, tags = metrics[n:], params[len(p):], tags[len(t):]
    return out


def worker_identity() -> dict[str, str]:
    return {"host": socket.gethostname(), "pid": str(os.getpid())}


class SweepTracker:
    """The parent run of one sweep invocation and the run of each trial (flat, tagged ``sweep_run_id``)."""

    def __init__(self, phase: str, study_name: str, objective_name: str, parent_run_id: str | None = None,
                 mlc: MlflowClient | None = None, experiment: str | None = None):
        self.mlc = mlc if mlc is not None else client()
        self.phase, self.study_name, self.objective_name = phase, study_name, objective_name
        self.experiment_id = experiment_id(self.mlc, experiment or f"3A-{phase}")
        self.parent_run_id = parent_run_id

    def start_parent(self, params: Mapping, tags: Mapping[str, str], close_dead: bool = True) -> str:
        """The sweep's parent run (``close_dead``: first mark this study's dead sweeps' runs KILLED)."""
        if close_dead:
            self.close_dead_parents()
        run = self.mlc.create_run(self.experiment_id, run_name=f"sweep-{self.study_name}",
                                  tags={"run_kind": RUN_KIND_SWEEP, "phase": self.phase, "study": self.study_name,
                                        **worker_identity(), **tags})
        self.parent_run_id = run.info.run_id
        log_batch(self.mlc, self.parent_run_id, params=params)
        return self.parent_run_id

    def close_dead_parents(self) -> None:
        """Sweep runs of this study left RUNNING by a killed process on this host become KILLED."""
        from tuning.storage.recovery import process_alive
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

    def log_trial(self, number: int, original_number: int, result: TrialResult, policies, params: Mapping,
                  on_front: bool = False) -> str:
        """The trial's run in a bounded number of requests, whatever the number of metrics: ``create_run`` (its
        tags) + one ``log_batch`` (params, metrics, per-seed history; chunked only past MLflow's caps) + the
        artifacts (written straight into a local artifact store, else one ``log_artifacts`` of the folder into
        the run's artifact location, one upload per file) + ``set_terminated``. A retry first deletes its dead
        attempt's run (one search, one delete). ``policies``: the candidate's files (anything with
        ``write(directory)``), or None; ``on_front``: the run joins the Pareto front of a two-objective study
        (its ``pareto`` tag). Returns the run's id."""
        key = self.trial_key(original_number)
        if original_number != number:  # a retry replaces whatever its dead attempt left behind
            for old in self.find_trial_runs(key):
                self.mlc.delete_run(old.info.run_id)
        tags = {"run_kind": RUN_KIND_TRIAL, "study": self.study_name, "optuna_trial": str(number),
                "trial_key": key, **result.tags()}
        if original_number != number:
            tags["retry_of"] = str(original_number)
        if result.second is not None:  # a two-objective trial: the close (and the trail process) keep it current
            tags["pareto"] = "true" if on_front else "false"
        if self.parent_run_id:  # not mlflow.parentRunId: the UI would fold every trial under the sweep run
            tags["sweep_run_id"] = self.parent_run_id
        run = self.mlc.create_run(self.experiment_id, run_name=f"trial-{number:04d}", tags=tags)
        run_id = run.info.run_id
        log_batch(self.mlc, run_id, result.metrics(), params, history=result.history())
        local = local_artifact_dir(run.info.artifact_uri)
        if local is not None:
            write_evaluation_artifacts(result, policies, local)
        else:
            with tempfile.TemporaryDirectory(prefix="trial-") as tmp:
                write_evaluation_artifacts(result, policies, Path(tmp))
                artifact_repository(run.info.artifact_uri, self.mlc.tracking_uri).log_artifacts(tmp)
        self.mlc.set_terminated(run_id)
        return run_id

    def reconcile_trial_runs(self, done: Sequence[tuple[int, int, str | None]]) -> int:
        """After a sweep: a trial key whose trial is COMPLETE keeps only the run Optuna recorded; any other run
        of that key (an HTTP retry of ``create_run`` against a tracking server, a stale attempt) is deleted.
        ``done``: the COMPLETE trials as (number, original number, recorded MLflow run id). Only the runs that
        are *not* recorded are listed (``run_id NOT IN``, up to :data:`RECONCILE_IN_MAX` recorded runs): a
        tracking server answers a search with every run's metrics, so listing the study's whole trail cost a
        closing sweep seconds."""
        if self.mlc.tracking_uri.startswith("sqlite:") and all(orig == number for number, orig, _ in done):
            return 0  # a local store has no HTTP retries, and no trial here replaced a dead attempt
        recorded = {orig: run_id for _, orig, run_id in done if run_id}
        if not recorded:
            return 0
        keys = {self.trial_key(orig) for orig in recorded}
        keep = set(recorded.values())
        if len(keep) <= RECONCILE_IN_MAX:
            ids = ", ".join(f"'{r}'" for r in sorted(keep))
            runs = search_all(self.mlc, [self.experiment_id], f"{self._trial_filter()} and attributes.run_id NOT IN ({ids})")
        else:
            runs = self.trial_runs()
        extra = [r for r in runs if r.data.tags.get("trial_key") in keys and r.info.run_id not in keep]
        for r in extra:
            self.mlc.delete_run(r.info.run_id)
        return len(extra)

    def _trial_filter(self) -> str:
        return f"tags.run_kind = '{RUN_KIND_TRIAL}' and tags.study = '{self.study_name}'"

    def trial_runs(self) -> list:
        return search_all(self.mlc, [self.experiment_id], self._trial_filter())

    def write_parent_files(self, write) -> None:
        """``write(directory)`` into the parent run's artifacts: straight into a local store, else uploaded."""
        run_id = self.parent_run_id
        local = local_artifact_dir(self.mlc.get_run(run_id).info.artifact_uri)
        with tempfile.TemporaryDirectory(prefix="sweep-") as tmp:
            out = local if local is not None else Path(tmp)
            out.mkdir(parents=True, exist_ok=True)
            write(out)
            if local is None:
                self.mlc.log_artifacts(run_id, tmp)

    def write_parent_plots(self, study) -> list[str]:
        """The study's plots (:func:`write_study_plots`) as the parent run's artifacts."""
        if not self.parent_run_id:
            return []
        written: list[str] = []
        self.write_parent_files(lambda out: written.extend(write_study_plots(study, out)))
        return written

    def finish_parent(self, summary: Mapping, status: str = "FINISHED") -> None:
        """``sweep_summary.json``, the best trial's metrics and tags, and the parent run's end."""
        if not self.parent_run_id:
            return
        text = json.dumps(summary, indent=2, sort_keys=True, default=str)
        self.write_parent_files(lambda out: (out / "sweep_summary.json").write_text(text))
        best = summary.get("best") or {}
        log_batch(self.mlc, self.parent_run_id,
                  metrics={"trials_complete": summary.get("trials_complete", 0),
                           "trials_feasible": summary.get("trials_feasible", 0),
                           **({"best_J": best["J"]} if "J" in best else {})},
                  tags={"best_trial": str(best.get("trial", "")), "best_run_id": best.get("mlflow_run_id") or "",
                        **({"closed_by": summary["closed_by"]} if summary.get("closed_by") else {})})
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


def delete_study_runs(names: Iterable[tuple[str, str]]) -> int:
    """Soft-delete (MLflow's lifecycle ``deleted``) every run tagged ``study = S`` in experiment E, for each
    (S, E): a campaign's own earlier sweeps, before it runs them afresh. Returns how many were deleted."""
    mlc, n = client(), 0
    for study, experiment in names:
        exp = mlc.get_experiment_by_name(experiment)
        if exp is None:
            continue
        for run in search_all(mlc, [exp.experiment_id], f"tags.study = '{study}'"):
            mlc.delete_run(run.info.run_id)
            n += 1
    return n


def _visualization():
    """``optuna.visualization`` (the trail process imports it while the trials run: ``tuning.trail.server``)."""
    import optuna.importance  # noqa: F401  (plot_param_importances imports it on first use)
    import optuna.visualization as vis

    return vis


def write_study_plots(study, directory: Path) -> list[str]:
    """Optuna plots as self-contained HTML (plotly.js inline: they render offline); importances only with
    >= 2 complete trials that vary."""
    vis = _visualization()
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
