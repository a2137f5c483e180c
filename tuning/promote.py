"""``python -m tuning.promote MLFLOW_RUN_ID [--policies policies] [--decision UNLOCK_P2] [--runs-root runs]``

Promotes a trial's candidate policy files to authority, after a witness:
1. refuse a vetoed run (tag ``veto`` != PASS) and a run whose policy artifacts do not match its
   digest tags;
2. replay the candidate on the run's seed with a fresh cache (materialised under ``--runs-root``)
   and refuse unless every deterministic field - identity and the whole metric pack - is identical
   to what the run recorded;
3. write the files into ``policies/`` (each file atomically) and append the lineage record to
   ``policies/lineage.yaml``; tag the new and the superseded authority runs; log the promotion as
   its own run in the ``authority`` experiment.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Sequence

import yaml
from mlflow.exceptions import MlflowException

from engine import ChainCache, run_chain
from engine import EngineError
from engine import PolicySet
from engine import load_yaml
from tuning.authority_txn import authority_lock, install as txn_install, tag_authority
from tuning.errors import (E_ARTIFACTS, E_NOT_FAITHFUL, E_RUN_MISSING, E_RUN_VETOED, E_WITNESS, TuningParser, run_cli,
                           text)
from tuning.objective import deterministic_view
from tuning.promote_guards import guard_promotion
from tuning.registry import register_authority
from tuning.tracking import AUTHORITY_EXPERIMENT, client, experiment_id, log_batch

LINEAGE_FILE = "lineage.yaml"


def _json_native(obj):
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


def _get_run(mlc, run_id: str):
    """The run, or ``E3A_TUN_022`` when the store says it has none; any other failure of the store is the store's
    (``E3A_TUN_042``, through tuning.errors)."""
    try:
        return mlc.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        raise EngineError(E_RUN_MISSING, f"MLflow run {run_id} not found at {mlc.tracking_uri}") from None


def fetch_candidate_files(mlc, run_id: str, workdir: Path, run=None) -> PolicySet:
    """A run's candidate policy artifacts, checked against its ``digest.<policy_id>`` tags."""
    run = run or _get_run(mlc, run_id)
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


def fetch_candidate(mlc, run_id: str, workdir: Path) -> tuple[object, PolicySet, dict]:
    """The run, its candidate PolicySet and its recorded evaluation; a vetoed run is refused."""
    run = _get_run(mlc, run_id)
    tags = run.data.tags
    if tags.get("veto") != "PASS":
        raise EngineError(E_RUN_VETOED, f"run {run_id} is vetoed ({tags.get('veto_reasons', 'no veto tag')}); "
                                        f"refusing to promote")
    policies = fetch_candidate_files(mlc, run_id, workdir, run)
    try:
        recorded = json.loads(Path(mlc.download_artifacts(run_id, "metric_pack.json", str(workdir))).read_text())
    except (MlflowException, OSError, ValueError) as exc:
        raise EngineError(E_ARTIFACTS, f"run {run_id}: metric_pack.json unavailable ({exc})") from None
    return run, policies, recorded


def witness(policies: PolicySet, recorded: dict, runs_root: Path | None) -> dict:
    """Replay every recorded seed with a fresh cache; exact comparison of each deterministic view,
    and the fidelity verdict of each replay (promotion requires FAITHFUL on every seed)."""
    from engine import fidelity_verdict

    per_seed = recorded.get("per_seed") or [{"seed": recorded["identity"]["seed"], "identity": recorded["identity"],
                                              "pack": recorded["pack"]}]
    diffs, fields, fidelity, first = [], 0, {}, None
    for entry in per_seed:
        seed = int(entry["identity"]["seed"])
        res = run_chain(policies, seed, cache=ChainCache(), run_root=runs_root)
        first = first or res
        replayed = _json_native(deterministic_view(res.pack, res.identity))
        expected = _json_native(deterministic_view(entry["pack"], entry["identity"]))
        diffs += [f"seed {seed}: {d}" for d in differences(expected, replayed)]
        fields += len(_leaves(expected))
        fidelity[seed] = fidelity_verdict(res.gates)
    return {"status": "PASS" if not diffs else "FAIL", "engine_run_id": first.identity["run_id"],
            "seed": int(first.identity["seed"]), "seeds": sorted(fidelity), "fields_compared": fields,
            "mismatches": diffs[:20], "fidelity": fidelity,
            "faithful": all(v == "FAITHFUL" for v in fidelity.values()),
            "s6_overall_status": first.s6_report["overall_status"], "s7_status": first.s7.get("status"),
            "run_dir": str(first.run_dir) if first.run_dir else None}


def _leaves(doc) -> list:
    if isinstance(doc, dict):
        return [x for v in doc.values() for x in _leaves(v)]
    if isinstance(doc, list):
        return [x for v in doc for x in _leaves(v)]
    return [doc]


def read_lineage(policies_dir: Path) -> list[dict]:
    path = policies_dir / LINEAGE_FILE
    if not path.exists():
        return []
    doc = load_yaml(path, E_ARTIFACTS) or {}
    promotions = doc.get("promotions", []) if isinstance(doc, dict) else None
    if not isinstance(promotions, list):
        raise EngineError(E_ARTIFACTS, f"{path}: expected a mapping with a 'promotions' list")
    return list(promotions)


def install(policies: PolicySet, policies_dir: Path, lineage: list[dict], entry: dict,
            run_tags: dict | None = None) -> None:
    """One transaction (tuning.authority_txn): every policy file and the new lineage record, the lineage
    renamed last, then the MLflow authority tags. Call with the authority lock held."""
    files = {f"{pid}.yaml": data for pid, data in sorted(policies.raw.items())}
    files[LINEAGE_FILE] = yaml.safe_dump({"promotions": lineage + [entry]}, sort_keys=False).encode()
    txn_install(policies_dir, files, LINEAGE_FILE, entry.get("mlflow_run_id"), run_tags)


def _lineage_agrees(policies_dir: Path, current: PolicySet, lineage: list[dict]) -> bool:
    """True when policies/ is what the last lineage entry installed (or there is no lineage yet)."""
    return not lineage or lineage[-1].get("parameter_hash") == current.parameter_hash


def promote(run_id: str, policies_dir: Path, decision: str | None = None, runs_root: Path | None = None,
            ladder_phase: str | None = None, reopen: str | None = None, reason: str | None = None) -> dict:
    """Serialised with every other authority change (tuning.authority_txn.authority_lock)."""
    with authority_lock(policies_dir):
        return _promote(run_id, policies_dir, decision, runs_root, ladder_phase, reopen, reason)


def _promote(run_id: str, policies_dir: Path, decision: str | None, runs_root: Path | None,
             ladder_phase: str | None, reopen: str | None, reason: str | None) -> dict:
    """Fetch -> guard -> witness -> (already the authority: close the phase) or install, log, register, record."""
    mlc = client()
    with tempfile.TemporaryDirectory(prefix="promote-") as tmp:
        run, candidate, recorded = fetch_candidate(mlc, run_id, Path(tmp))
        tags = run.data.tags
        current = PolicySet.from_dir(policies_dir)
        lineage = read_lineage(policies_dir)
        guard_promotion(policies_dir, current, candidate, run_id, reopen)
        result = witness(candidate, recorded, runs_root)
        if current.parameter_hash == candidate.parameter_hash and _lineage_agrees(policies_dir, current, lineage):
            return _close_as_authority(run_id, tags, current, lineage, result, policies_dir, decision, ladder_phase)
        _require_witness(run_id, result)
        previous_run = lineage[-1].get("mlflow_run_id") if lineage else None
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        entry = _lineage_entry(run_id, tags, recorded, candidate, current, previous_run, result, now, decision, reason)
        new_tags = {"authority_since": now, **({"decision": decision} if decision else {})}
        install(candidate, policies_dir, lineage, entry, new_tags)  # also tags: exactly one run current
        promo_id = _log_promotion(mlc, Path(tmp, "promotion"), run_id, tags, entry, candidate, current,
                                  previous_run, recorded, result, policies_dir)
        registered = register_authority(mlc, promo_id, candidate, (policies_dir / LINEAGE_FILE).read_bytes(), entry)
        _tag_source_runs(mlc, run_id, promo_id, previous_run, now)
    from tuning.ladder import record_step

    record_step(ladder_phase or tags.get("phase", "?"), entry["decision"], policies_dir=policies_dir, source_run_id=run_id,
                evidence={"promotion_run_id": promo_id, "study": tags.get("study"), "trial": tags.get("optuna_trial"),
                          "J": recorded.get("J"), "witness": result["status"],
                          "witness_fields": result["fields_compared"], "fidelity": "FAITHFUL",
                          "seeds": ",".join(map(str, result["seeds"])),
                          **({"pareto_point": tags["pareto"]} if "pareto" in tags else {}),
                          **({"reason": reason} if reason else {})},
                metrics={"J": recorded.get("J") or 0.0})
    return {"status": "PROMOTED", "run_id": run_id, "promotion_run_id": promo_id, "witness": result,
            "parameter_hash": candidate.parameter_hash, "previous_parameter_hash": current.parameter_hash,
            "decision": entry["decision"], "registered_model": registered}


def _close_as_authority(run_id: str, tags: dict, current: PolicySet, lineage: list, result: dict,
                        policies_dir: Path, decision: str | None, ladder_phase: str | None) -> dict:
    """The selected candidate is the authority itself (the plan's "F0"): nothing to install, but the
    witness replay and the phase decision still close the phase on the ladder."""
    if result["status"] != "PASS":
        raise EngineError(E_WITNESS, f"run {run_id}: witness replay differs: {result['mismatches'][0]}")
    if lineage and lineage[-1].get("mlflow_run_id") == run_id:
        tag_authority(run_id, {})  # repairs the tags of a promote killed before it tagged
    out = {"status": "ALREADY_AUTHORITY", "run_id": run_id, "parameter_hash": current.parameter_hash,
           "witness": result}
    if decision:
        from tuning.ladder import record_step

        record_step(ladder_phase or tags.get("phase", "?"), decision, policies_dir=policies_dir, source_run_id=run_id,
                    note="selected candidate is the current authority; witness replayed",
                    evidence={"witness": result["status"], "witness_fields": result["fields_compared"],
                              "study": tags.get("study"), "trial": tags.get("optuna_trial")})
        out["decision"] = decision
    return out


def _require_witness(run_id: str, result: dict) -> None:
    """Only an identical, FAITHFUL replay may become the authority."""
    if result["status"] != "PASS":
        raise EngineError(E_WITNESS, f"run {run_id}: witness replay differs in {len(result['mismatches'])}+ "
                                     f"field(s), first: {result['mismatches'][0]}")
    if not result["faithful"]:
        raise EngineError(E_NOT_FAITHFUL, f"run {run_id}: fidelity {result['fidelity']}; an authority must be "
                                          f"FAITHFUL on every seed")


def _lineage_entry(run_id: str, tags: dict, recorded: dict, candidate: PolicySet, current: PolicySet,
                   previous_run: str | None, result: dict, now: str, decision: str | None,
                   reason: str | None) -> dict:
    """The record appended to ``policies/lineage.yaml``."""
    return {
        "promoted_utc": now, "mlflow_run_id": run_id, "phase": tags.get("phase"), "study": tags.get("study"),
        "optuna_trial": tags.get("optuna_trial"), "engine_run_id": tags.get("engine_run_id"),
        "seed": int(recorded["identity"]["seed"]), "J": recorded.get("J"),
        "parameter_hash": candidate.parameter_hash, "digests": dict(candidate.digests),
        "previous_authority": {"parameter_hash": current.parameter_hash, "digests": dict(current.digests),
                               "mlflow_run_id": previous_run},
        "witness": {k: result[k] for k in ("status", "engine_run_id", "fields_compared", "s6_overall_status",
                                           "s7_status")},
        "decision": decision or "PROMOTED",
        "seeds": result["seeds"], "fidelity": "FAITHFUL",
        "pareto": tags.get("pareto", "n/a"), "reason": reason or "",
    }


def _log_promotion(mlc, wdir: Path, run_id: str, tags: dict, entry: dict, candidate: PolicySet, current: PolicySet,
                   previous_run: str | None, recorded: dict, result: dict, policies_dir: Path) -> str:
    """The promotion's own run in the ``authority`` experiment (policies, lineage, witness as artifacts)."""
    promo = mlc.create_run(experiment_id(mlc, AUTHORITY_EXPERIMENT), run_name=f"promote-{tags.get('phase')}",
                           tags={"run_kind": "promotion", "phase": tags.get("phase", ""), "source_run_id": run_id,
                                 "decision": entry["decision"], "witness": result["status"],
                                 "parameter_hash": candidate.parameter_hash,
                                 "previous_parameter_hash": current.parameter_hash,
                                 "previous_authority_run_id": previous_run or "none",
                                 **{f"digest.{p}": d for p, d in candidate.digests.items()}})
    promo_id = promo.info.run_id
    log_batch(mlc, promo_id, metrics={"J": recorded.get("J") or 0.0,
                                      "witness.fields_compared": result["fields_compared"]})
    candidate.write(wdir / "policies")
    (wdir / LINEAGE_FILE).write_bytes((policies_dir / LINEAGE_FILE).read_bytes())
    (wdir / "witness.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    mlc.log_artifacts(promo_id, str(wdir))
    mlc.set_terminated(promo_id)
    return promo_id


def _tag_source_runs(mlc, run_id: str, promo_id: str, previous_run: str | None, now: str) -> None:
    """The promoted trial run names its promotion; the superseded authority run its end."""
    log_batch(mlc, run_id, tags={"promotion_run_id": promo_id})
    if previous_run and previous_run != run_id:
        try:
            log_batch(mlc, previous_run, tags={"superseded_utc": now})
        except MlflowException:
            pass  # the superseded run lives in another tracking store: the lineage file still records it


def build_parser() -> TuningParser:
    ap = TuningParser(prog="python -m tuning.promote", description=__doc__.splitlines()[0])
    ap.add_argument("run_id", metavar="MLFLOW_RUN_ID")
    ap.add_argument("--policies", default="policies", help="authority policy directory")
    ap.add_argument("--decision", type=text, help="phase decision recorded with the promotion (e.g. UNLOCK_P2)")
    ap.add_argument("--runs-root", default="runs", help="where the witness run is materialised ('' = not)")
    ap.add_argument("--ladder-phase", type=text, help="phase label of the ladder step (default: the run's phase), e.g. P1.4")
    ap.add_argument("--reopen", metavar="REASON", type=text, help="reopen a frozen authority (the reason is recorded)")
    ap.add_argument("--reason", type=text, help="why this candidate (e.g. which Pareto point and why), recorded in the ladder")
    ap.add_argument("--json", action="store_true")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = promote(args.run_id, Path(args.policies), args.decision, Path(args.runs_root) if args.runs_root else None,
                  args.ladder_phase, args.reopen, args.reason)
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
    elif out["status"] == "ALREADY_AUTHORITY":
        print(f"run {args.run_id} is already the authority (parameter_hash {out['parameter_hash'][:16]}); witness "
              f"{out['witness']['status']} ({out['witness']['fields_compared']} fields); "
              f"decision {out.get('decision', 'none recorded')}")
    else:
        w = out["witness"]
        print(f"promoted run {args.run_id} -> {args.policies}/ (parameter_hash {out['parameter_hash'][:16]}, "
              f"previous {out['previous_parameter_hash'][:16]}); witness {w['status']}: "
              f"{w['fields_compared']} deterministic fields replayed exactly (engine run {w['engine_run_id']}); "
              f"promotion run {out['promotion_run_id']}; decision {out['decision']}; model "
              f"{out['registered_model']['name']} v{out['registered_model']['version']} @authority")
    return 0


if __name__ == "__main__":
    run_cli(main)
