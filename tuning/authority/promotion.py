"""``python -m tuning.promote MLFLOW_RUN_ID [--policies policies] [--decision UNLOCK_P2] [--runs-root runs]``

Promotes a trial's candidate policy files to authority, after a witness:
1. refuse a vetoed run (tag ``veto`` != PASS), a run whose policy artifacts do not match its digest tags, a
   frozen authority (unless ``--reopen REASON``) and a candidate that only rewrites version lines;
2. replay the candidate from its policy files on the run's seeds, with fresh caches, against the base its
   J is measured on (``tuning.authority.witness``; materialised under ``--runs-root``), and refuse unless every
   re-derived field - identity, the whole metric pack, J, deltas, vetoes and verdicts, per seed - is identical
   to what the run recorded, and the replay is FAITHFUL on every seed;
3. one transaction (``tuning.authority.txn``, ``tuning.authority.promotion_txn``): the policy files and the lineage
   record, the authority tags, the promotion run, the registry version and its alias, the source runs' tags
   and the ladder steps (the reopening, if any, then the promotion's). What they record is the replay's (J,
   verdicts, metric pack), never the run's artifacts. A refused promote writes nothing; a killed one is
   finished by the next command that takes the authority lock (a re-run, certify, freeze, verify_authority).
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path

import yaml
from tuning.trail.tracking import RUN_KIND_TRIAL, MlflowException

from engine import EngineError, fidelity_overall
from engine import PolicySet
from tuning.authority.txn import authority_lock, install as txn_install
from tuning.common.errors import E_ARTIFACTS, E_NOT_FAITHFUL, E_RUN_MISSING, E_RUN_VETOED, E_WITNESS
from tuning.authority.guards import guard_base, guard_promotion, require_lineage_agrees
from tuning.authority.lineage import LINEAGE_FILE, read_lineage  # noqa: F401 - read_lineage: its old home
from tuning.authority.promotion_txn import PROMOTION_RUN, encode, texts
from tuning.study.trial_row import TrialRow
from tuning.trail.tracking import client
from tuning.authority.witness import trial_base, witness



def _get_run(mlc, run_id: str):
    """The run, or ``E3A_TUN_022`` when the store says it has none; any other failure of the store is the store's
    (``E3A_TUN_042``, through tuning.common.errors)."""
    try:
        return mlc.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        raise EngineError(E_RUN_MISSING, f"MLflow run {run_id} not found at {mlc.tracking_uri}") from None


def store_holding(run_id: str):
    """The MLflow client of the store that must hold ``run_id``: one that does not exist yet holds no run, and a
    lookup creates none (``E3A_TUN_022``)."""
    from tuning.trail.store_init import default_uri, readable_store_exists

    if not readable_store_exists():
        raise EngineError(E_RUN_MISSING, f"MLflow run {run_id} not found: no MLflow store at {default_uri()} yet")
    return client()


def fetch_candidate_files(mlc, run_id: str, workdir: Path, run=None, world=None) -> PolicySet:
    """A run's candidate policy artifacts, checked against its ``digest.<policy_id>`` tags (and, given a
    ``world``, the run must have been scored on it)."""
    run = run or _get_run(mlc, run_id)
    kind = run.data.tags.get("run_kind")
    if kind != RUN_KIND_TRIAL:   # a sweep's parent, a certification, a ladder step: no candidate of its own
        raise EngineError(E_RUN_MISSING, f"MLflow run {run_id} is {'a ' + repr(kind) if kind else 'not a harness'} run, "
                                         f"not a trial run of a sweep (python -m tuning.rank lists a phase's trials)")
    if world is not None:
        check_run_world(run_id, run.data.tags, world)
    try:
        policy_dir = Path(mlc.download_artifacts(run_id, "policies", str(workdir)))
    except (MlflowException, OSError) as exc:
        raise EngineError(E_ARTIFACTS, f"run {run_id}: policy artifacts unavailable ({exc})") from None
    policies = PolicySet.from_dir(policy_dir)
    for pid, digest in policies.digests.items():
        tag = run.data.tags.get(f"digest.{pid}")
        if tag != digest:
            raise EngineError(E_ARTIFACTS, f"run {run_id}: artifact {pid}.yaml digest {digest[:12]} does not "
                                           f"match its tag {str(tag)[:12]}")
    return policies


def check_run_world(run_id: str, tags: dict, world) -> None:
    """A run scored on another world (its ``world`` tag) is refused: an authority belongs to one world."""
    from tuning.common.worlds import E_WORLD_MISMATCH

    if tags.get("world") != world.fingerprint:
        raise EngineError(E_WORLD_MISMATCH, f"run {run_id} was scored on world {tags.get('world_name', '?')} "
                                            f"({str(tags.get('world', 'unrecorded'))[:12]}), not on world "
                                            f"{world.name} ({world.fingerprint[:12]})")


def fetch_candidate(mlc, run_id: str, workdir: Path, world=None) -> tuple[object, PolicySet, dict]:
    """The run, its candidate PolicySet and its recorded evaluation; a vetoed run is refused."""
    run = _get_run(mlc, run_id)
    row = TrialRow.from_mlflow_run(run)
    if not row.feasible and run.data.tags.get("run_kind") == RUN_KIND_TRIAL:   # another kind: fetch_candidate_files
        raise EngineError(E_RUN_VETOED, f"run {run_id} is vetoed ({','.join(row.vetoes) or 'no veto reason'}); "
                                        f"refusing to promote")
    policies = fetch_candidate_files(mlc, run_id, workdir, run, world)
    try:
        recorded = json.loads(Path(mlc.download_artifacts(run_id, "metric_pack.json", str(workdir))).read_text())
    except (MlflowException, OSError, ValueError) as exc:
        raise EngineError(E_ARTIFACTS, f"run {run_id}: metric_pack.json unavailable ({exc})") from None
    return run, policies, recorded


def install(policies: PolicySet, policies_dir: Path, lineage: list[dict], entry: dict, run_tags: dict | None = None,
            steps: list[dict] | None = None) -> dict:
    """One transaction (tuning.authority.txn): every policy file and the new lineage record, the lineage renamed
    last, then the records of ``steps`` (tuning.authority.promotion_txn). Call with the authority lock held."""
    files = {f"{pid}.yaml": data for pid, data in sorted(policies.raw.items())}
    files[LINEAGE_FILE] = yaml.safe_dump({"promotions": lineage + [entry]}, sort_keys=False).encode()
    return txn_install(policies_dir, files, LINEAGE_FILE, entry.get("mlflow_run_id"), run_tags, steps)


def promote(run_id: str, policies_dir: Path, decision: str | None = None, runs_root: Path | None = None,
            ladder_phase: str | None = None, reopen: str | None = None, reason: str | None = None,
            world=None, progress: bool = False) -> dict:
    """Serialised with every other authority change (tuning.authority.txn.authority_lock). ``world``: the
    authority's world (None: the one the folder records), where the witness replays; ``progress``: its bar."""
    from tuning.common import worlds

    world = world if world is not None else worlds.authority_world(policies_dir)
    worlds.require(policies_dir, world, "promotion")
    with authority_lock(policies_dir):
        return _promote(run_id, policies_dir, decision, runs_root, ladder_phase, reopen, reason, world, progress)


def _promote(run_id: str, policies_dir: Path, decision: str | None, runs_root: Path | None,
             ladder_phase: str | None, reopen: str | None, reason: str | None, world, progress: bool = False) -> dict:
    """Fetch -> guard -> witness (nothing written until here) -> close the phase (the candidate is the authority)
    or one transaction: files, lineage, tags, promotion run, registry, ladder."""
    mlc = store_holding(run_id)
    with tempfile.TemporaryDirectory(prefix="promote-") as tmp:
        run, candidate, recorded = fetch_candidate(mlc, run_id, Path(tmp), world)
        current = PolicySet.from_dir(policies_dir)
        lineage = read_lineage(policies_dir)
        require_lineage_agrees(policies_dir, current, lineage, f"promote run {run_id}")
        reopening = guard_promotion(policies_dir, current, candidate, run_id, reopen)
        base = trial_base(mlc, run, policies_dir, Path(tmp))
        guard_base(run_id, base, current, candidate)   # before the witness's replay: nothing undone, nothing spent
        result = witness(mlc, run, candidate, recorded, policies_dir, runs_root, Path(tmp), world, base, progress)
    tags = run.data.tags
    if current.parameter_hash == candidate.parameter_hash:   # the folder agrees with its lineage (checked above)
        return _close_as_authority(run_id, tags, current, lineage, result, policies_dir, decision, ladder_phase,
                                   reopening)
    _require_witness(run_id, result)
    seedpack = _require_seedpack_faithful(run_id, candidate, result, world)
    previous_run = lineage[-1].get("mlflow_run_id") if lineage else None
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    entry = _lineage_entry(run_id, tags, candidate, current, previous_run, result, now, decision, reason)
    if seedpack:
        entry["seedpack_fidelity"] = seedpack
    steps = _promotion_steps(run_id, tags, entry, candidate, current, result, now, ladder_phase, reason, reopening)
    made = install(candidate, policies_dir, lineage, entry, steps=steps)
    return {"status": "PROMOTED", "run_id": run_id, "promotion_run_id": made["promotion_run_id"],
            "witness": brief(result), "parameter_hash": candidate.parameter_hash,
            "previous_parameter_hash": current.parameter_hash, "decision": entry["decision"],
            "registered_model": made["registered"]}


def brief(result: dict) -> dict:
    """The witness without the replayed record (which the promotion run keeps as ``metric_pack.json``)."""
    return {k: v for k, v in result.items() if k != "doc"}


def _close_as_authority(run_id: str, tags: dict, current: PolicySet, lineage: list, result: dict,
                        policies_dir: Path, decision: str | None, ladder_phase: str | None,
                        reopening: dict | None) -> dict:
    """The selected candidate is the authority itself (the plan's "F0"): nothing to install, but the
    witness replay and the phase decision still close the phase on the ladder (after the reopening, if any)."""
    from tuning.authority.ladder import record_step
    from tuning.authority.promotion_txn import tag_authority

    if result["status"] != "PASS":
        raise EngineError(E_WITNESS, f"run {run_id}: witness replay differs: {result['mismatches'][0]}")
    if lineage and lineage[-1].get("mlflow_run_id") == run_id:
        tag_authority(policies_dir, run_id, {})  # exactly one run current, whatever an older store left
    out = {"status": "ALREADY_AUTHORITY", "run_id": run_id, "parameter_hash": current.parameter_hash,
           "witness": brief(result)}
    phase = ladder_phase or tags.get("phase", "?")
    if decision and reopening is None and _already_recorded(policies_dir, phase, decision, run_id, current):
        out.update(decision=decision, note="this decision on this run is already a step of the ladder")
    elif decision:
        if reopening is not None:
            record_step(**{"policies_dir": policies_dir, **reopening})
        record_step(phase, decision, policies_dir=policies_dir, source_run_id=run_id,
                    note="selected candidate is the current authority; witness replayed",
                    evidence={"witness": result["status"], "witness_fields": result["fields_compared"],
                              "study": tags.get("study"), "trial": tags.get("optuna_trial")})
        out["decision"] = decision
    return out


def _already_recorded(policies_dir: Path, phase: str, decision: str, run_id: str, current: PolicySet) -> bool:
    """Is this decision on this run already a step of the ladder since the authority became what it is (a promote
    run again, before or after other steps on the same authority: a certification, a review)?"""
    from tuning.authority.ladder_steps import read_ladder

    for step in reversed(read_ladder(policies_dir)):
        if step.get("parameter_hash") != current.parameter_hash:
            return False
        if (step.get("phase"), step.get("decision"), step.get("source_run_id")) == (phase, decision, run_id):
            return True
    return False


def _require_witness(run_id: str, result: dict) -> None:
    """Only an identical, FAITHFUL replay may become the authority."""
    if result["status"] != "PASS":
        raise EngineError(E_WITNESS, f"run {run_id}: witness replay differs in {len(result['mismatches'])}+ "
                                     f"field(s), first: {result['mismatches'][0]}")
    if not result["faithful"]:
        raise EngineError(E_NOT_FAITHFUL, f"run {run_id}: fidelity {result['fidelity']}; an authority must be "
                                          f"FAITHFUL on every seed (NOT_APPLICABLE on a world without evidence)")


def _require_seedpack_faithful(run_id: str, candidate: PolicySet, result: dict, world) -> dict[int, str]:
    """A run scored on some of the seedpack's seeds only (a study of its own ``seeds:``) is scored on the others
    too, at full scale: an authority must be FAITHFUL on the seedpack that certifies it, not only on the seeds it was
    chosen on. Returns those seeds' fidelity verdicts (empty when the run was scored on the whole seedpack)."""
    from engine import REQUIRED_SEEDS, fidelity_holds
    from tuning.authority.holdout import holdout_report

    missing = [s for s in REQUIRED_SEEDS if s not in set(result["seeds"])]
    if not missing:
        return {}
    rows = holdout_report(candidate, missing, world=world)["per_seed"]
    fidelity = {int(s): rows[s]["fidelity"] for s in missing}
    bad = [f"{s} {v}" for s, v in fidelity.items() if not fidelity_holds(v)]
    if bad:
        raise EngineError(E_NOT_FAITHFUL, f"run {run_id}: scored on seeds {','.join(map(str, result['seeds']))}, and "
                                          f"on the seedpack's other seeds its fidelity is {', '.join(bad)}; an "
                                          f"authority must be FAITHFUL on every seedpack seed")
    return fidelity


def _lineage_entry(run_id: str, tags: dict, candidate: PolicySet, current: PolicySet, previous_run: str | None,
                   result: dict, now: str, decision: str | None, reason: str | None) -> dict:
    """The record appended to ``policies/lineage.yaml``: J and the verdict are the witness replay's."""
    return {
        "promoted_utc": now, "mlflow_run_id": run_id, "phase": tags.get("phase"), "study": tags.get("study"),
        "optuna_trial": tags.get("optuna_trial"), "engine_run_id": result["engine_run_id"],
        "seed": result["seed"], "J": result["J"], "verdict": result["verdict"],
        "parameter_hash": candidate.parameter_hash, "digests": dict(candidate.digests),
        "previous_authority": {"parameter_hash": current.parameter_hash, "digests": dict(current.digests),
                               "mlflow_run_id": previous_run},
        "witness": {k: result[k] for k in ("status", "engine_run_id", "fields_compared", "s6_overall_status",
                                           "s7_status")},
        "decision": decision or "PROMOTED",
        "seeds": result["seeds"], "fidelity": fidelity_overall(result["fidelity"].values()),
        "pareto": tags.get("pareto", "n/a"), "reason": reason or "",
        "world": {"fingerprint": tags.get("world"), "name": tags.get("world_name")},
    }


def _promotion_steps(run_id: str, tags: dict, entry: dict, candidate: PolicySet, current: PolicySet, result: dict,
                     now: str, ladder_phase: str | None, reason: str | None, reopening: dict | None) -> list[dict]:
    """Every record of the promotion after its files, in order (tuning.authority.promotion_txn runs them)."""
    decision = entry["decision"]
    previous_run = entry["previous_authority"]["mlflow_run_id"]
    steps = [
        {"kind": "authority_tags", "run_id": run_id, "run_tags": {"authority_since": now, "decision": decision}},
        {"kind": "promotion_run", "run_name": f"promote-{tags.get('phase')}", "texts": texts(result),
         "tags": {"run_kind": "promotion", "phase": tags.get("phase", ""), "source_run_id": run_id,
                  "decision": decision, "witness": result["status"], "verdict": result["verdict"],
                  "fidelity": result["fidelity_verdict"], "parameter_hash": candidate.parameter_hash,
                  "previous_parameter_hash": current.parameter_hash,
                  "previous_authority_run_id": previous_run or "none",
                  "world": str(tags.get("world")), "world_name": str(tags.get("world_name")),
                  **{f"digest.{p}": d for p, d in candidate.digests.items()}},
         "metrics": {"J": result["J"], "witness.fields_compared": result["fields_compared"]},
         "previous_policies": encode(current.raw)},
        {"kind": "register", "entry": entry},
        {"kind": "source_tags", "run_id": run_id, "previous_run": previous_run, "now": now}]
    if reopening is not None:
        steps.append({"kind": "ladder", **reopening})
    evidence = {"promotion_run_id": PROMOTION_RUN, "study": tags.get("study"), "trial": tags.get("optuna_trial"),
                "J": result["J"], "witness": result["status"], "witness_fields": result["fields_compared"],
                "fidelity": entry["fidelity"], "seeds": ",".join(map(str, result["seeds"])),
                **({"pareto_point": tags["pareto"]} if "pareto" in tags else {}),
                **({"reason": reason} if reason else {})}
    steps.append({"kind": "ladder", "phase": ladder_phase or tags.get("phase", "?"), "decision": decision,
                  "source_run_id": run_id, "evidence": evidence, "metrics": {"J": result["J"]}})
    return steps
