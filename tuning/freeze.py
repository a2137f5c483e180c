"""``python -m tuning.freeze [--policies policies]``: P6, freeze the certified authority.

Reads the newest P5 certification step of the *current* authority (same parameter_hash) from the
decision ladder, maps its verdict to the plan's freeze status (``FROZEN_CERTIFIED_BPLUS``,
``FROZEN_CERTIFIED_B`` or ``FROZEN_BEST_EFFORT_BELOW_B``) and records the P6 step. Refuses when the
authority has no certification (certify it first), so a freeze always names its evidence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from engine import EngineError
from engine import PolicySet
from tuning.authority_txn import authority_lock
from tuning.errors import E_CERTIFY, TuningParser, run_cli
from tuning.ladder import read_ladder, record_step

FREEZE_STATUS = {"PASS_BPLUS": "FROZEN_CERTIFIED_BPLUS", "PASS_B": "FROZEN_CERTIFIED_B"}


def freeze_status(verdict: str, fidelity: str = "FAITHFUL") -> str:
    """A certified freeze needs the plan verdict AND fidelity: a DISTORTED authority is best effort."""
    if fidelity != "FAITHFUL":
        return "FROZEN_BEST_EFFORT_DISTORTED"
    return FREEZE_STATUS.get(verdict, "FROZEN_BEST_EFFORT_BELOW_B")


def freeze(policies_dir: Path) -> dict:
    with authority_lock(policies_dir):  # serialised with promote and certify --record
        return _freeze(policies_dir)


def _freeze(policies_dir: Path) -> dict:
    current = PolicySet.from_dir(policies_dir).parameter_hash
    certs = [s for s in read_ladder(policies_dir) if s["phase"] == "P5" and s["parameter_hash"] == current]
    if not certs:
        raise EngineError(E_CERTIFY, f"the authority {current[:12]} has no P5 certification in the ladder; "
                                     f"run python -m tuning.certify --authority --record first")
    cert = certs[-1]
    fidelity = str((cert.get("evidence") or {}).get("fidelity", "UNMEASURED"))
    status = freeze_status(cert["decision"], fidelity)
    return record_step("P6", status, policies_dir=policies_dir, source_run_id=cert["mlflow_run_id"],
                       evidence={"certification_step": cert["mlflow_run_id"], "verdict": cert["decision"],
                                 "fidelity": fidelity})


def main(argv: Sequence[str] | None = None) -> int:
    ap = TuningParser(prog="python -m tuning.freeze", description=__doc__.splitlines()[0])
    ap.add_argument("--policies", default="policies")
    args = ap.parse_args(argv)
    step = freeze(Path(args.policies))
    print(f"P6 {step['decision']} for authority {step['parameter_hash'][:12]} (MLflow run {step['mlflow_run_id']})")
    return 0


if __name__ == "__main__":
    run_cli(main)
