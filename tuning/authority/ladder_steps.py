"""The decision ladder's records, without the authority lock: ``policies/ladder.yaml`` and the steps' MLflow runs.

:func:`record_unlocked` records one step (its run in the ``authority`` experiment, then its ``ladder.yaml``
entry). Callers hold the authority lock: :func:`tuning.authority.ladder.record_step` takes it; an authority transaction
(:mod:`tuning.authority.promotion_txn`) records its steps under the lock its install or recovery holds.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path

import yaml

from engine import atomic_write
from engine import EngineError
from engine import PolicySet
from engine import load_yaml
from tuning.common.errors import E_USAGE

LADDER_FILE = "ladder.yaml"
STEP_FIELDS = ("phase", "decision", "parameter_hash", "mlflow_run_id")   # what record_unlocked writes, every step


def read_ladder(policies_dir: Path) -> list[dict]:
    path = Path(policies_dir) / LADDER_FILE
    if not path.exists():
        return []
    doc = load_yaml(path, E_USAGE) or {}
    steps = doc.get("steps") if isinstance(doc, dict) else None
    if not isinstance(steps, list):
        raise EngineError(E_USAGE, f"{path}: expected a mapping with a 'steps' list")
    for i, step in enumerate(steps):
        problem = _step_problem(step)
        if problem:
            raise EngineError(E_USAGE, f"{path}: steps[{i}] {problem}")
    return steps


def _step_problem(step: object) -> str | None:
    """What makes ``step`` no ladder step as :func:`record_unlocked` writes it, or None."""
    if not isinstance(step, dict):
        return f"is {type(step).__name__} {str(step)[:40]!r}, not a mapping (a recorded step)"
    for field in STEP_FIELDS:
        if not isinstance(step.get(field), str) or not step[field].strip():
            return f"has no text {field!r} (got {step.get(field)!r:.40})"
    if not isinstance(step.get("evidence", {}), dict):
        return "has an 'evidence' that is not a mapping"
    if not isinstance(step.get("note", ""), str):
        return "has a 'note' that is not text"
    return None


def evidence_digest(evidence: dict | None, note: str | None) -> str:
    """SHA-256 of a step's evidence and note as ``ladder.yaml`` keeps them (JSON-native): its run's
    ``evidence_sha256`` tag, which :mod:`tuning.authority.records_check` compares a step with."""
    from engine import canonical_json, sha256_hex

    doc = {"evidence": json.loads(json.dumps(evidence or {}, default=str)), "note": note or None}
    return sha256_hex(canonical_json(doc))


def write_ladder(policies_dir: Path, steps: list[dict]) -> None:
    text = yaml.safe_dump({"steps": steps}, sort_keys=False, default_flow_style=False)
    atomic_write(policies_dir / LADDER_FILE, text.encode("utf-8"))


def record_unlocked(phase: str, decision: str, *, policies_dir: Path, evidence: dict | None = None,
                 metrics: dict | None = None, artifacts: dict[str, bytes] | None = None,
                 source_run_id: str | None = None, note: str | None = None,
                 measured: PolicySet | None = None, txn: str | None = None,
                 parameter_hash: str | None = None) -> dict:
    """``measured``: the policy set the step is about when it is not the authority folder's (e.g. P0 on the
    authored baseline). ``txn``: the step belongs to that authority transaction (tuning.authority.promotion_txn) and is
    recorded once: a step of it already in the ladder is returned, its MLflow run (tag ``txn``) reused.
    ``parameter_hash``: the authority the step is about when it is known by its hash only (a reopening recorded
    with the promotion that replaced it)."""
    steps = read_ladder(policies_dir)   # a broken ladder is refused before anything is recorded
    if txn is not None:
        done = next((s for s in steps
                     if s.get("txn") == txn and (s.get("phase"), s.get("decision")) == (phase, decision)), None)
        if done is not None:
            return done
    from tuning.common.worlds import authority_names, bound_world

    measured_hash = parameter_hash or (measured or PolicySet.from_dir(policies_dir)).parameter_hash
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    world = bound_world(policies_dir)
    tags = {"run_kind": "ladder", "phase": phase, "decision": decision, "parameter_hash": measured_hash,
            "world": world["fingerprint"], "world_name": str(world.get("name")),
            "evidence_sha256": evidence_digest(evidence, note),
            **({"source_run_id": source_run_id} if source_run_id else {}), **({"note": note} if note else {}),
            **({"txn": txn} if txn else {})}
    numeric = {k: float(v) for k, v in (metrics or {}).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    files = dict(artifacts or {})
    files["step.json"] = json.dumps({"phase": phase, "decision": decision, "evidence": evidence or {},
                                     "metrics": numeric, "note": note}, indent=2, sort_keys=True, default=str).encode()
    run_id = _ladder_run(tags, numeric, files, authority_names(policies_dir)["experiment"])
    step = {"phase": phase, "decision": decision, "recorded_utc": now, "mlflow_run_id": run_id,
            "parameter_hash": measured_hash, "world": world["fingerprint"], **({"source_run_id": source_run_id} if source_run_id else {}),
            **({"note": note} if note else {}), **({"evidence": evidence} if evidence else {}),
            **({"txn": txn} if txn else {})}
    steps.append(json.loads(json.dumps(step, default=str)))
    write_ladder(Path(policies_dir), steps)
    return step


def _ladder_run(tags: dict, metrics: dict, files: dict[str, bytes], experiment: str = "authority") -> str:
    """The step's run in the ``authority`` experiment, FINISHED with its metrics and artifacts. A transaction's
    step (tag ``txn``) reuses the run an interrupted attempt created, and finishes it."""
    from tuning.trail.tracking import client, experiment_id, log_batch

    mlc = client()
    exp = experiment_id(mlc, experiment)
    found = [r for r in mlc.search_runs([exp], f"tags.txn = '{tags['txn']}' and tags.run_kind = 'ladder'")
             if (r.data.tags.get("phase"), r.data.tags.get("decision")) == (tags["phase"], tags["decision"])] \
        if tags.get("txn") else []
    if found and found[0].info.status == "FINISHED":
        return found[0].info.run_id
    run_id = found[0].info.run_id if found else \
        mlc.create_run(exp, run_name=f"{tags['phase']} {tags['decision']}", tags=tags).info.run_id
    log_batch(mlc, run_id, metrics=metrics)
    with tempfile.TemporaryDirectory(prefix="ladder-") as tmp:
        for name, data in files.items():
            Path(tmp, name).write_bytes(data)
        mlc.log_artifacts(run_id, tmp)
    mlc.set_terminated(run_id)
    return run_id
