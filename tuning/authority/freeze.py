"""``python -m tuning.freeze [--policies policies] [--target PASS_BPLUS]``: P6, freeze the certified authority.

Reads the newest P5 certification step of the *current* authority (same parameter_hash) from the
decision ladder and records the P6 step with the plan's freeze status. The certified grade is the
highest grade G (B+ then B) such that the seedpack verdict is G or better, every seedpack seed is
FAITHFUL, and at least ``HOLDOUT_MIN`` of its held-out seeds are G or better and FAITHFUL (a grade that holds
only on the seeds it was tuned on is not certified):

- ``FROZEN_CERTIFIED_BPLUS`` / ``FROZEN_CERTIFIED_B``: that grade, at or above ``--target`` when one is given;
- ``FROZEN_BEST_EFFORT_B`` / ``FROZEN_BEST_EFFORT_BELOW_B``: below the target (the campaign's target is B+):
  the best faithful grade reached, with the gates that block the target named in its evidence;
- ``FROZEN_BEST_EFFORT_DISTORTED``: an authority that is not FAITHFUL on every seedpack seed.

Refuses an authority folder whose files are not what its lineage installed, and a certification step that is not
what its MLflow run recorded (``E3A_TUN_028``); refuses when the authority has no certification, or one that measured no held-out seeds (certify it with
``--holdout N`` first), so a freeze always names its evidence, unseen seeds included. Freezing again what the
ladder's last step froze (the same authority, certification and status) records nothing (``already_recorded``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from engine import EngineError
from engine import PolicySet
from engine import fidelity_holds
from tuning.authority.txn import authority_lock
from tuning.common import worlds
from tuning.common.errors import E_CERTIFY, E_DISAGREE
from tuning.authority.ladder_steps import read_ladder

HOLDOUT_MIN = 0.98
GRADES = ("BPLUS", "B")                       # best first
VERDICT_GRADE = {"PASS_BPLUS": "BPLUS", "PASS_B": "B"}
HELD_RATE = {"BPLUS": "holdout_pass_rate_bplus_faithful", "B": "holdout_pass_rate_b_faithful"}


def certified_grade(verdict: str, evidence: dict) -> str | None:
    """The highest grade the certification supports (seedpack and held-out seeds), or None."""
    reached = VERDICT_GRADE.get(verdict)
    if reached is None or not fidelity_holds(str(evidence.get("fidelity", "UNMEASURED"))):
        return None
    for grade in GRADES[GRADES.index(reached):]:
        rate = evidence.get(HELD_RATE[grade])
        if rate is None and grade == "B" and "holdout_pass_rate_b" in evidence:   # records before the B rate
            rate = min(evidence["holdout_pass_rate_b"], evidence.get("holdout_faithful_rate", 0.0))
        if "holdout_seeds" not in evidence or (rate is not None and rate >= HOLDOUT_MIN):
            return grade
    return None


def freeze_status(verdict: str, fidelity: str = "FAITHFUL", evidence: dict | None = None,
                  target: str | None = None) -> str:
    """A certified freeze needs the plan verdict AND fidelity AND the held-out rate (evidence without held-out
    seeds is graded on the seedpack alone here; :func:`freeze` refuses such a certification); below
    the ``target`` grade (``PASS_BPLUS``/``PASS_B``) the freeze is best effort."""
    if not fidelity_holds(fidelity):
        return "FROZEN_BEST_EFFORT_DISTORTED"
    grade = certified_grade(verdict, {"fidelity": fidelity, **(evidence or {})})
    wanted = VERDICT_GRADE.get(target or "", "B")
    if grade is not None and GRADES.index(grade) <= GRADES.index(wanted):
        return f"FROZEN_CERTIFIED_{grade}"
    return f"FROZEN_BEST_EFFORT_{grade or 'BELOW_B'}"


def _require_recorded(step: dict) -> None:
    """The certification step the freeze grades must be what its MLflow run recorded (evidence, held-out rates and
    verdict included): ``ladder.yaml`` is a plain file, and a rate edited there would be frozen as certified."""
    from tuning.authority.records_check import step_against_store
    from tuning.trail.tracking import MlflowException, client

    mlc = client()
    try:
        run = mlc.get_run(step["mlflow_run_id"])
    except MlflowException:
        run = None
    problem = step_against_store(mlc, step, run)
    if problem:
        raise EngineError(E_DISAGREE, f"{problem}; refusing to freeze on it (certify the authority again with "
                                      f"--record here, or point MLFLOW_TRACKING_URI at the store that recorded it)")


def _require_seedpack(cert: dict, current: str, certify: str) -> None:
    """The grade a freeze certifies is the plan's seedpack's: a certification of fewer seeds reads the cross-seed
    spread (3A-X01) of fewer values (of one: 0), and helper 61 froze B+ from ``--seeds 42`` an authority whose
    seedpack is B by its spread alone."""
    from tuning.common.limits import seedpack_missing

    raw = str((cert.get("evidence") or {}).get("seeds", ""))
    missing = seedpack_missing(raw.split(","))
    if missing:
        raise EngineError(E_CERTIFY, f"the authority {current[:12]}'s certification (ladder step "
                                     f"{str(cert.get('mlflow_run_id', '?'))[:12]}) ran seeds {raw or 'none'}, not the "
                                     f"plan's seedpack (missing {','.join(map(str, missing))}): its cross-seed spread "
                                     f"is not the seedpack's; run {certify} first")


def freeze(policies_dir: Path, target: str | None = None, trade_off: Sequence[str] = ()) -> dict:
    """P6 on the certified authority. ``trade_off``: the targets the campaign's P2 frontier found no faithful trial
    meeting together; a best-effort freeze names them apart from its blocking gates, which are only those the
    certification measured failing on this authority."""
    with authority_lock(policies_dir):  # serialised with promote and certify --record
        return _freeze(policies_dir, target, list(trade_off))


def _freeze(policies_dir: Path, target: str | None, trade_off: list[str]) -> dict:
    # read at the call, not bound at import: a module imported while a test had record_step patched kept the patch
    # (certification's failing_gates imports this module: a campaign's P6 then recorded nothing and returned None)
    from tuning.authority.ladder import record_step
    from tuning.authority.guards import require_lineage_agrees
    from tuning.authority.promotion import read_lineage

    policies = PolicySet.from_dir(policies_dir)
    require_lineage_agrees(policies_dir, policies, read_lineage(policies_dir), "freeze it")
    current = policies.parameter_hash
    ladder = read_ladder(policies_dir)
    certs = [s for s in ladder if s["phase"] == "P5" and s["parameter_hash"] == current]
    certify = f"python -m tuning.certify --authority --record --holdout 200{worlds.policies_arg(policies_dir)}"
    if not certs:
        raise EngineError(E_CERTIFY, f"the authority {current[:12]} has no P5 certification in the ladder; run "
                                     f"{certify} first")
    cert = certs[-1]
    _require_recorded(cert)
    ev = cert.get("evidence") or {}
    if "holdout_seeds" not in ev:
        raise EngineError(E_CERTIFY, f"the authority {current[:12]}'s certification (ladder step "
                                     f"{str(cert.get('mlflow_run_id', '?'))[:12]}) measured no held-out seeds, and a "
                                     f"grade is frozen only where it holds on seeds it was not tuned on; run {certify} "
                                     f"first")
    _require_seedpack(cert, current, certify)
    fidelity = str(ev.get("fidelity", "UNMEASURED"))
    status = freeze_status(cert["decision"], fidelity, ev, target)
    evidence = {"certification_step": cert["mlflow_run_id"], "verdict": cert["decision"], "fidelity": fidelity}
    note = None
    if status.startswith("FROZEN_BEST_EFFORT_"):
        gates = [g for g in str(ev.get("failing_gates", "")).split(",") if g and g != "none"]
        evidence["blocking"] = ",".join(dict.fromkeys(gates)) or "none measured"
        evidence["holdout_pass_rate_bplus_faithful"] = ev.get("holdout_pass_rate_bplus_faithful")
        note = (f"best effort: {target or 'the certified grade'} is not reached with FAITHFUL fidelity; blocking (failing "
                f"on its certification): {evidence['blocking']}")
        if trade_off:
            evidence["frontier_trade_off"] = ",".join(trade_off)
            note += f"; the P2 frontier found no faithful trial meeting {' and '.join(trade_off)} together"
    if target:
        evidence["target"] = target
    last = ladder[-1]
    if (last["phase"], last["decision"], last["parameter_hash"], last.get("source_run_id")) == \
            ("P6", status, current, cert["mlflow_run_id"]):   # this freeze is the ladder's last step already
        return {**last, "already_recorded": True}
    return record_step("P6", status, policies_dir=policies_dir, source_run_id=cert["mlflow_run_id"],
                       evidence=evidence, note=note)
