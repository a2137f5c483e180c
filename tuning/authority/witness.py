"""The promotion witness: a candidate is scored again from its own policy files, never from what its run recorded.

:func:`witness` (called once from ``tuning.authority.promotion``, before anything is written):

1. finds the study the trial was scored for (its sweep run's ``study_file``) and the base policy set its J is
   measured against (its sweep run's ``base_parameter_hash``: the authority folder when it still is that set,
   else the files a promotion in this store recorded for it, checked against the hash);
2. replays the candidate on every seed the run names, the base on the same seeds, with fresh chain caches and
   scored exactly as a sweep scores a trial (:class:`tuning.study.objective.SeedRobustObjective`): identity, metric
   pack, J, deltas, vetoes, plan and fidelity verdicts, per seed and for the trial;
3. compares every one of those fields with the run's ``metric_pack.json`` and its ``J`` metric. A difference (a
   tampered ``J`` or ``pack`` included) is a mismatch: promotion refuses it (``E3A_TUN_021``).

What a promotion records (lineage, ladder, registry, the promotion run) is the replay's: :func:`witness` returns
the replayed J, verdicts and the whole replayed record (``doc``).
"""

from __future__ import annotations

import json
from pathlib import Path

from engine import ChainCache, EngineError, PolicySet
from engine import fidelity_holds
from tuning.common.errors import E_ARTIFACTS, E_WITNESS

E_BASE_MISSING = "E3A_TUN_027_WITNESS_BASE_MISSING"
IDENTITY_KEYS = ("run_id", "parameter_hash", "manifest_fingerprint", "world_digest", "seed", "policy_digests")
SCORED_KEYS = ("J", "deltas", "vetoes", "verdict", "fidelity_verdict", "second_objective", "seeds", "seed_values",
               "pack", "metrics", "worst")
SEED_KEYS = ("seed", "J", "pack", "verdict", "fidelity_verdict", "vetoes")


def json_native(obj):
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def differences(recorded, replayed, path: str = "") -> list[str]:
    """Paths where two JSON-native documents differ (exact comparison, floats included)."""
    if isinstance(recorded, dict) and isinstance(replayed, dict):
        out = []
        for key in sorted(set(recorded) | set(replayed)):
            if key not in recorded or key not in replayed:
                out.append(f"{path}{key} (missing on one side)")
            else:
                out.extend(differences(recorded[key], replayed[key], f"{path}{key}."))
        return out
    if isinstance(recorded, list) and isinstance(replayed, list) and len(recorded) == len(replayed):
        return [d for i, (a, b) in enumerate(zip(recorded, replayed)) for d in differences(a, b, f"{path}{i}.")]
    return [] if recorded == replayed else [f"{path.rstrip('.')}: recorded {recorded!r}, replayed {replayed!r}"]


def leaves(doc) -> list:
    if isinstance(doc, dict):
        return [x for v in doc.values() for x in leaves(v)]
    if isinstance(doc, list):
        return [x for v in doc for x in leaves(v)]
    return [doc]


def _identity(doc) -> dict:
    ident = doc.get("identity") if isinstance(doc, dict) else None
    return {k: (ident or {}).get(k) for k in IDENTITY_KEYS}


def scored_view(doc) -> dict:
    """What a replay re-derives, from a trial's ``metric_pack.json`` (or the replay's own record)."""
    doc = doc if isinstance(doc, dict) else {}
    per_seed = doc.get("per_seed") if isinstance(doc.get("per_seed"), list) else []
    view = {k: doc.get(k) for k in SCORED_KEYS}
    view["identity"] = _identity(doc)
    view["per_seed"] = [{**{k: e.get(k) for k in SEED_KEYS}, "identity": _identity(e)} if isinstance(e, dict) else e
                        for e in per_seed]
    return json_native(view)


def _sweep_run(mlc, run):
    from tuning.trail.tracking import MlflowException

    sweep_id = run.data.tags.get("sweep_run_id")
    try:
        return mlc.get_run(sweep_id) if sweep_id else None
    except MlflowException:
        return None


def study_of(run, sweep):
    """The study file the trial's sweep loaded (its ``study_file`` param), for the phase the run names."""
    from tuning.study.spec import load_study

    path = sweep.data.params.get("study_file") if sweep is not None else None
    if not path:
        raise EngineError(E_ARTIFACTS, f"run {run.info.run_id}: no sweep run names the study it was scored for")
    spec = load_study(path)
    if spec.phase != run.data.tags.get("phase"):
        raise EngineError(E_WITNESS, f"run {run.info.run_id}: its study file {path} is now phase {spec.phase}, "
                                     f"not the run's {run.data.tags.get('phase')}")
    return spec


def base_of(mlc, run, sweep, policies_dir: Path, workdir: Path) -> PolicySet:
    """The policy set the trial's J is measured against: the authority folder when it still is that set, else
    the ``policies`` (or ``previous_policies``) a promotion run of this store recorded for it."""
    wanted = sweep.data.tags.get("base_parameter_hash") if sweep is not None else None
    current = PolicySet.from_dir(policies_dir)
    if wanted == current.parameter_hash:
        return current
    found = _recorded_policy_set(mlc, wanted, workdir, policies_dir) if wanted else None
    if found is None:
        raise EngineError(E_BASE_MISSING, f"run {run.info.run_id}: its J is measured against the policy set "
                                          f"{str(wanted)[:12]}, which is not the authority "
                                          f"({current.parameter_hash[:12]}) and no promotion in this store recorded "
                                          f"it; re-run the sweep")
    return found


def _recorded_policy_set(mlc, wanted: str, workdir: Path, policies_dir: Path) -> PolicySet | None:
    from tuning.trail.tracking import MlflowException

    from tuning.common.worlds import authority_names

    exp = mlc.get_experiment_by_name(authority_names(policies_dir)["experiment"])
    if exp is None:
        return None
    for tag, artifact in (("parameter_hash", "policies"), ("previous_parameter_hash", "previous_policies")):
        flt = f"tags.run_kind = 'promotion' and tags.{tag} = '{wanted}'"
        for prun in mlc.search_runs([exp.experiment_id], flt, max_results=5):
            dst = workdir / "bases" / prun.info.run_id
            dst.mkdir(parents=True, exist_ok=True)
            try:
                found = PolicySet.from_dir(mlc.download_artifacts(prun.info.run_id, artifact, str(dst)))
            except (MlflowException, OSError, EngineError):
                continue
            if found.parameter_hash == wanted:
                return found
    return None


def run_seeds(run) -> list[int]:
    tags = run.data.tags
    try:
        return [int(s) for s in (tags.get("seeds") or tags.get("seed") or "").split(",") if s.strip()]
    except ValueError:
        raise EngineError(E_ARTIFACTS, f"run {run.info.run_id}: seeds tag {tags.get('seeds')!r} unreadable") from None


def replay(spec, seeds, base: PolicySet, candidate: PolicySet, runs_root: Path | None, world=None,
           progress: bool = False):
    """The candidate scored as its trial was, on its world: the base on every seed first, then the candidate with
    a fresh chain cache per seed (nothing of the base's chain reused); ``runs_root`` materialises the candidate's
    runs. ``progress``: a bar on stderr, one step per chain (a large world's witness takes minutes)."""
    import sys

    from tqdm import tqdm

    from tuning.study.objective import SeedRobustObjective

    objective = SeedRobustObjective(spec, seeds, base, world=world)
    with tqdm(total=2 * len(objective.per_seed), desc="witness replay", unit="chain", file=sys.stderr,
              disable=not progress) as bar:
        for per_seed in objective.per_seed:   # the base, seed by seed (the objective's anchor)
            bar.set_postfix_str(f"base, seed {per_seed.seed}")
            per_seed.anchor
            bar.update(1)
        objective.anchor
        for per_seed in objective.per_seed:
            per_seed.cache = ChainCache()

        def each(obj):
            bar.set_postfix_str(f"candidate, seed {obj.seed}")
            ev = obj.replay(candidate, runs_root)
            bar.update(1)
            return ev

        return objective.each(each)


def trial_base(mlc, run, policies_dir: Path, workdir: Path) -> PolicySet:
    """The policy set a trial's J is measured against (:func:`base_of`, found from the trial's sweep run)."""
    return base_of(mlc, run, _sweep_run(mlc, run), policies_dir, workdir)


def witness(mlc, run, candidate: PolicySet, recorded: dict, policies_dir: Path, runs_root: Path | None,
            workdir: Path, world=None, base: PolicySet | None = None, progress: bool = False) -> dict:
    """Replay and compare (see the module docstring); ``status`` PASS when every field is identical. ``base``: the
    trial's base when the caller already found it (:func:`trial_base`); ``progress``: the replay's bar."""
    from tuning.study.trial_result import TrialResult

    sweep = _sweep_run(mlc, run)
    spec = study_of(run, sweep)
    seeds = run_seeds(run)
    base = base if base is not None else base_of(mlc, run, sweep, policies_dir, workdir)
    ev = replay(spec, seeds, base, candidate, runs_root, world, progress)
    from tuning.study.seed_robust import study_directions

    doc = json_native(TrialResult.from_evaluation(ev, spec.phase, spec.objective_name,
                                                  directions=study_directions(spec)).artifact_doc())
    expected, replayed = scored_view(recorded), scored_view(doc)
    diffs = differences(expected, replayed)
    if run.data.metrics.get("J") != replayed["J"]:
        diffs.append(f"MLflow metric J: recorded {run.data.metrics.get('J')!r}, replayed {replayed['J']!r}")
    fidelity = {int(s): e.fidelity for s, e in zip(ev.seeds, ev.per_seed)}
    run_id = ev.identity.get("run_id")
    # fields_compared: each seed's identity and metric pack (as counted since the first witness); fields_checked:
    # every re-derived field (J, deltas, vetoes, verdicts besides)
    fields = sum(len(leaves({"identity": e.get("identity"), "pack": e.get("pack")})) for e in expected["per_seed"]
                 if isinstance(e, dict))
    return {"status": "PASS" if not diffs else "FAIL", "engine_run_id": run_id, "seed": int(ev.seeds[0]),
            "seeds": sorted(fidelity), "fields_compared": fields, "fields_checked": len(leaves(expected)) + 1,
            "mismatches": diffs[:20],
            "fidelity": fidelity, "faithful": all(fidelity_holds(v) for v in fidelity.values()),
            "J": replayed["J"], "verdict": replayed["verdict"], "fidelity_verdict": replayed["fidelity_verdict"],
            "s6_overall_status": ev.s6_status, "s7_status": ev.s7_status, "doc": doc,
            "run_dir": str(Path(runs_root) / run_id) if runs_root is not None and run_id else None}
