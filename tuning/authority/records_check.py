"""Do an authority folder's past records still say what was recorded? The committed history checked against itself
and against the MLflow store that recorded it.

``lineage.yaml`` and ``ladder.yaml`` are plain files: a hand edit of a past entry (a J, a held-out rate, a P0
verdict, the seeds an authority was scored on) would otherwise be published by ``ladder show`` and
``tuning.results`` and trusted by ``tuning.freeze``. Every record has a twin the store wrote at the same moment:

- a lineage entry installed what the entry before it had installed (its ``previous_authority``), save an authored
  install, which starts the chain again from whatever the folder held;
- a promotion entry has a FINISHED promotion run of its trial installing its ``parameter_hash``, with the entry's J,
  decision and previous authority;
- a ladder step has its run in the authority experiment, whose tags (phase, decision, authority, source run, and
  ``evidence_sha256``: the digest of its evidence and note) are the step's; a run recorded before that tag is
  compared through its ``step.json``.

A store may hold only the later part of the history: a clone's committed ladder names runs of the store it was
recorded in, and a promotion made in a new store continues it. Records whose runs this store does not hold are
allowed only *before* the first one it holds (they are counted, not checked); one missing after it is a
disagreement (a run id edited to hide an edit).

Each ``*_against_store`` function returns the disagreements as text (empty: they agree) and how many earlier records
this store does not hold.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from tuning.authority.ladder_steps import evidence_digest

AUTHORED = "AUTHORED_INSTALL"


def lineage_breaks(lineage: list[dict]) -> list[str]:
    """Entries whose ``previous_authority`` is not what the entry before them installed."""
    out = []
    for i in range(1, len(lineage)):
        entry, before = lineage[i], lineage[i - 1]
        if entry.get("decision") == AUTHORED:
            continue
        prev = (entry.get("previous_authority") or {})
        if prev.get("parameter_hash") != before.get("parameter_hash"):
            out.append(f"lineage entry {i} ({entry.get('decision')}) replaced {str(prev.get('parameter_hash'))[:12]}, "
                       f"but entry {i - 1} installed {str(before.get('parameter_hash'))[:12]}")
        elif before.get("mlflow_run_id") and prev.get("mlflow_run_id") != before.get("mlflow_run_id"):
            out.append(f"lineage entry {i} names {prev.get('mlflow_run_id')} as the run it replaced, but entry "
                       f"{i - 1} installed run {before.get('mlflow_run_id')}")
    return out


def lineage_against_store(lineage: list[dict], runs: list) -> tuple[list[str], int]:
    """Each promotion entry against its promotion run (``runs``: the authority experiment's runs)."""
    promotions: dict[tuple, list] = {}
    for r in runs:
        t = r.data.tags
        if t.get("run_kind") == "promotion" and r.info.status == "FINISHED":
            promotions.setdefault((t.get("source_run_id"), t.get("parameter_hash")), []).append(r)
    out, earlier, held = [], 0, False
    for i, entry in enumerate(lineage):
        run_id = entry.get("mlflow_run_id")
        if not run_id:
            continue
        found = promotions.get((run_id, entry.get("parameter_hash")), [])
        if not found:
            if held:
                out.append(f"lineage entry {i}: no FINISHED promotion run of {run_id} installing "
                           f"{str(entry.get('parameter_hash'))[:12]}, though this store holds the entries before it")
            earlier += not held
            continue
        held = True
        prev = str((entry.get("previous_authority") or {}).get("parameter_hash"))
        if not any(_same_promotion(r, entry, prev) for r in found):
            r = found[-1]
            out.append(f"lineage entry {i}: J {entry.get('J')!r}, decision {entry.get('decision')}, previous "
                       f"{prev[:12]}; its promotion run {r.info.run_id} recorded J {r.data.metrics.get('J')!r}, "
                       f"decision {r.data.tags.get('decision')}, previous "
                       f"{str(r.data.tags.get('previous_parameter_hash'))[:12]}")
    return out, earlier


def _same_promotion(run, entry: dict, previous: str) -> bool:
    t = run.data.tags
    return (run.data.metrics.get("J") == entry.get("J") and t.get("decision") == entry.get("decision")
            and t.get("previous_parameter_hash") == previous)


def step_against_store(mlc, step: dict, run) -> str | None:
    """One ladder step against its run (None: the run is missing; the caller decides what that means)."""
    if run is None:
        return f"ladder step {step.get('phase')} {step.get('decision')}: its run {step.get('mlflow_run_id')} is not in this store"
    t = run.data.tags
    for key in ("phase", "decision", "parameter_hash", "source_run_id"):
        if t.get(key) != step.get(key):
            return (f"ladder step {step.get('phase')} {step.get('decision')} ({step['mlflow_run_id'][:12]}): {key} "
                    f"{step.get(key)!r}, its run recorded {t.get(key)!r}")
    digest = t.get("evidence_sha256")
    if digest is not None:   # recorded with its digest: no artifact to fetch
        if digest == evidence_digest(step.get("evidence"), step.get("note")):
            return None
        recorded = _step_json(mlc, run.info.run_id) or {}   # to name what differs
        return _evidence_differs(step, recorded)
    recorded = _step_json(mlc, run.info.run_id)   # a step recorded before the digest tag
    if recorded is None:
        return f"ladder step {step.get('phase')} {step.get('decision')}: its run {run.info.run_id} has no step.json"
    if (recorded.get("evidence") or {}) != json.loads(json.dumps(step.get("evidence") or {}, default=str)) or \
            (recorded.get("note") or None) != (step.get("note") or None):
        return _evidence_differs(step, recorded)
    return None


def _evidence_differs(step: dict, recorded: dict) -> str:
    keys = sorted(k for k in set(recorded.get("evidence") or {}) | set(step.get("evidence") or {})
                  if (recorded.get("evidence") or {}).get(k) != (step.get("evidence") or {}).get(k))
    return (f"ladder step {step.get('phase')} {step.get('decision')} ({step['mlflow_run_id'][:12]}): its "
            f"{'evidence ' + ', '.join(keys) if keys else 'note'} differs from what its run recorded")


def ladder_against_store(mlc, ladder: list[dict], runs: list) -> tuple[list[str], int]:
    by_id = {r.info.run_id: r for r in runs}
    out, earlier, held = [], 0, False
    for step in ladder:
        run = by_id.get(step["mlflow_run_id"])
        if run is None and not held:
            earlier += 1
            continue
        held = True
        problem = step_against_store(mlc, step, run)
        if problem:
            out.append(problem + (", though this store holds the steps before it" if run is None else ""))
    return out, earlier


def _step_json(mlc, run_id: str) -> dict | None:
    from tuning.trail.tracking import MlflowException

    with tempfile.TemporaryDirectory(prefix="ladder-check-") as tmp:
        try:
            return json.loads(Path(mlc.download_artifacts(run_id, "step.json", tmp)).read_text())
        except (MlflowException, OSError, ValueError):
            return None
