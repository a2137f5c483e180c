"""Promotion guards, checked before any witness replay or write (called once from ``tuning.authority.promotion``).

- A frozen authority (a ``FROZEN_CERTIFIED_*`` step with no ``REOPENED`` after it on the ladder) refuses every promotion unless the
  user reopens it with a reason (``--reopen REASON``); the reopening is recorded as a ladder step
  (phase ``P6``, decision ``REOPENED``, the reason as its note) with the promotion's own records, only once
  its witness has passed: a refused promote writes nothing.
- An authority folder whose files are not what its lineage's last entry installed (edited by hand) is refused by
  every command that would record on it (promote, ``certify --record``, freeze): a promotion would otherwise name
  the edited files as its ``previous_authority`` and launder them into a lineage that verifies.
- A candidate whose policy documents equal the authority's once the ``version`` metadata is set aside is
  refused as "no change": installing it would only rewrite version lines (and drop the certification).
"""

from __future__ import annotations

from pathlib import Path

from engine import EngineError
from engine import PolicySet
from tuning.common.errors import E_DISAGREE

E_FROZEN = "E3A_TUN_024_AUTHORITY_FROZEN"
E_NO_CHANGE = "E3A_TUN_025_NO_CHANGE"
E_UNDOES = "E3A_TUN_029_UNDOES_A_LATER_PROMOTION"
FROZEN_PREFIX = "FROZEN_CERTIFIED_"
FROZEN_ANY = "FROZEN_"             # P6's decisions: FROZEN_CERTIFIED_* and FROZEN_BEST_EFFORT_*
REOPENED = "REOPENED"
VERSION_KEYS = ("version",)


def frozen_step(policies_dir: Path, any_freeze: bool = False) -> dict | None:
    """The step that froze the authority, when no reopening came after it, else None. Steps recorded after a
    freeze that change no policy (a sweep's no-op precheck, a later certification) leave it frozen: only
    ``REOPENED`` (``--reopen REASON``) thaws it. A best-effort freeze (``FROZEN_BEST_EFFORT_*``) leaves the
    authority open to promotion (tuning may go on towards the grade); ``any_freeze``: it counts too, for what would
    re-author the folder and replace the ladder that records it (a campaign re-run, ``tuning.author --into``)."""
    from tuning.authority.ladder_steps import read_ladder

    prefix = FROZEN_ANY if any_freeze else FROZEN_PREFIX
    for step in reversed(read_ladder(policies_dir)):
        decision = str(step.get("decision", ""))
        if decision.startswith(prefix):
            return step
        if decision == REOPENED:
            return None
    return None


def require_lineage_agrees(policies_dir: Path, current: PolicySet, lineage: list[dict], action: str) -> None:
    """``policies_dir`` must hold what its lineage's last entry installed (no lineage yet: nothing to agree with);
    else one ``E3A_TUN_028`` line refusing ``action``."""
    installed = lineage[-1].get("parameter_hash") if lineage else None
    if installed is not None and installed != current.parameter_hash:
        raise EngineError(E_DISAGREE, f"{policies_dir}/ holds policies {current.parameter_hash[:12]}, but its lineage's "
                                      f"last entry installed {str(installed)[:12]}: its files were changed outside a "
                                      f"promotion; refusing to {action}. Restore the files the lineage installed (git "
                                      f"checkout {policies_dir}), or change the authority through a sweep and "
                                      f"tuning.promote")


def without_version(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in VERSION_KEYS}


def changed_policies(current: PolicySet, candidate: PolicySet) -> list[str]:
    """Policy ids whose documents differ, version metadata aside."""
    ids = sorted(set(current.raw) | set(candidate.raw))
    return [pid for pid in ids if pid not in current.raw or pid not in candidate.raw
            or without_version(current.doc(pid)) != without_version(candidate.doc(pid))]


def guard_promotion(policies_dir: Path, current: PolicySet, candidate: PolicySet, run_id: str,
                    reopen: str | None = None) -> dict | None:
    """Refuse a frozen authority (unless reopened) and a version-only candidate. Writes nothing: returns the
    reopening's ladder step (phase, decision, note, evidence) for the promotion to record with its own records,
    once its witness has passed (a refused promote leaves the authority frozen)."""
    frozen = frozen_step(policies_dir)
    if frozen is not None and not reopen:
        raise EngineError(E_FROZEN, f"the authority {current.parameter_hash[:12]} is {frozen['decision']} "
                                    f"(ladder step {str(frozen.get('mlflow_run_id', '?'))[:12]}); refusing to "
                                    f"promote run {run_id}; pass --reopen REASON to reopen it (recorded in the ladder)")
    if current.parameter_hash != candidate.parameter_hash and not changed_policies(current, candidate):
        raise EngineError(E_NO_CHANGE, f"run {run_id}: its policies differ from the authority "
                                       f"{current.parameter_hash[:12]} only in version metadata; nothing to promote")
    if frozen is None:
        return None
    return {"phase": "P6", "decision": REOPENED, "source_run_id": run_id, "note": reopen,
            "parameter_hash": current.parameter_hash,   # the frozen authority is what is reopened
            "evidence": {"frozen_status": frozen["decision"], "frozen_step": frozen.get("mlflow_run_id"),
                         "candidate_run_id": run_id}}


def guard_base(run_id: str, base: PolicySet, current: PolicySet, candidate: PolicySet) -> None:
    """A trial scored against an earlier authority (``base``) installs its whole policy set: refuse it where that
    would undo what was promoted since, a policy the trial left as its base had it and the authority has changed
    since (a P1.2 trial after the P3 lock would switch the S4 safeguards off again). Two candidates of one sweep,
    promoted one after the other, change the same policies: the second replaces the first, as intended."""
    if base.parameter_hash == current.parameter_hash:
        return
    undone = [pid for pid in sorted(set(base.raw) | set(current.raw))
              if candidate.raw.get(pid) == base.raw.get(pid) and current.raw.get(pid) != base.raw.get(pid)]
    if undone:
        raise EngineError(E_UNDOES, f"run {run_id} was scored against the authority {base.parameter_hash[:12]}, not "
                                    f"the current {current.parameter_hash[:12]}; installing it would undo what was "
                                    f"promoted since in {', '.join(undone)}: re-run its phase's sweep on the current "
                                    f"authority")
