"""The decision ladder: every phase closure (P0, POPT.0, P1.2 ... P6) as one step of the trail.

A step is recorded twice, on purpose: as a run in MLflow's ``authority`` experiment
(``run_kind = ladder``; tags ``phase``, ``decision``, ``parameter_hash``; its evidence as metrics and
artifacts), so a person reads the whole ladder in the UI; and as an entry of the committed
``policies/ladder.yaml``, so a fresh clone can show the ladder without the MLflow store.

``python -m tuning.ladder show [--json]`` prints the ladder; ``python -m tuning.ladder record --phase P
--decision D [--note TEXT] [--file ARTIFACT ...]`` records a step by hand (e.g. a review decision).
"""

from __future__ import annotations

from pathlib import Path

from engine import EngineError
from tuning.common.errors import E_USAGE
from tuning.authority.ladder_steps import record_unlocked
from tuning.study.spec import SWEPT_PHASES

__all__ = ["LADDER_FILE", "PHASES", "ladder_table", "read_ladder", "record_step"]

# the plan's phases a step closes (AUTHOR, an authored install's step, is recorded by tuning.author only)
PHASES = ("P0", "POPT.0", "POPT.1", *SWEPT_PHASES, "P5", "P6")


def record_step(phase: str, decision: str, *, policies_dir: Path = Path("policies"), **kw) -> dict:
    """Log one ladder step to MLflow and append it to ``policies/ladder.yaml``, under the authority lock
    (two steps recorded at once both land)."""
    from tuning.authority.txn import authority_lock

    if not str(phase).strip() or not str(decision).strip():
        raise EngineError(E_USAGE, f"a ladder step needs a phase and a decision (got {phase!r}, {decision!r})")
    with authority_lock(policies_dir):
        return record_unlocked(phase, decision, policies_dir=policies_dir, **kw)


def _volatile(key: str) -> bool:
    """Evidence that names a particular MLflow store's runs (new ids on every replay), or what happened to
    be in the folder before a campaign re-authored it."""
    return key.endswith("run_id") or key in ("certification_step", "previous_parameter_hash")


def ladder_table(steps: list[dict], stable: bool = False) -> str:
    """The ladder as Markdown. ``stable``: without MLflow run ids, so a ``tuning.campaign replay`` (which
    makes new runs) reproduces the table byte for byte (the README's Results use it)."""
    head = "| # | phase | decision | authority | evidence |" + ("" if stable else " MLflow run |")
    rows = [head, "|---|---|---|---|---|" + ("" if stable else "---|")]
    for i, s in enumerate(steps, 1):
        ev = s.get("evidence") or {}
        brief = ", ".join(f"{k}={v}" for k, v in ev.items()
                          if not isinstance(v, (dict, list)) and not (stable and _volatile(k)))
        if s.get("note"):
            brief = f"{s['note']}; {brief}" if brief else s["note"]
        brief = " ".join(brief.replace("|", "/").splitlines())   # one table row, whatever a note holds
        row = f"| {i} | {s['phase']} | `{s['decision']}` | `{s['parameter_hash'][:12]}` | {brief} |"
        rows.append(row if stable else row + f" `{s['mlflow_run_id'][:12]}` |")
    return "\n".join(rows) + "\n"
