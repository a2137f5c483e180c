"""The authority in the MLflow Model Registry (called once from ``tuning.authority.promotion`` after an install).

Each promotion logs the installed policy set as an MLflow model (a LoggedModel in the ``authority``
experiment, linked to the promotion run: its three policy files, ``lineage.yaml`` and an ``MLmodel``
descriptor), registers it as a new version of the registered model ``seg3a-authority`` and moves the
alias ``authority`` to it. The lineage (source trial, study, J, witness, decision, previous authority)
is on the version's tags and description, and the registered model's description names the current
authority, so the Models page shows the chain of promotions.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus
from mlflow.exceptions import MlflowException

from engine import PolicySet
from tuning.trail.tracking import experiment_id

MODEL_NAME = "seg3a-authority"
ALIAS = "authority"
MODEL_TYPE = "seg3a-policy-set"
LINEAGE_KEYS = ("phase", "study", "optuna_trial", "engine_run_id", "seed", "J", "decision")


def _mlmodel(policies: PolicySet, entry: dict) -> str:
    return yaml.safe_dump({"artifact_path": "policies", "model_type": MODEL_TYPE, "flavors": {MODEL_TYPE: {
        "parameter_hash": policies.parameter_hash, "digests": dict(policies.digests),
        "loader": "engine.policies.PolicySet.from_dir(<model>/policies)"}},
        "metadata": {"decision": entry.get("decision"), "promoted_utc": entry.get("promoted_utc")}}, sort_keys=True)


def _lineage_tags(entry: dict, promotion_run_id: str) -> dict[str, str]:
    prev = entry.get("previous_authority") or {}
    tags = {k: str(entry.get(k)) for k in LINEAGE_KEYS if entry.get(k) is not None}
    tags.update({"source_run_id": str(entry.get("mlflow_run_id")), "promotion_run_id": promotion_run_id,
                 "parameter_hash": str(entry.get("parameter_hash")),
                 "previous_parameter_hash": str(prev.get("parameter_hash")),
                 "witness": str((entry.get("witness") or {}).get("status"))})
    return tags


def _ensure_model(mlc: MlflowClient, name: str) -> None:
    try:
        mlc.get_registered_model(name)
    except MlflowException:
        mlc.create_registered_model(name, tags={"segment": "3A", "kind": MODEL_TYPE}, description=(
            "The Segment 3A authority policy set. Each version is one promotion (witness replayed); "
            f"the alias '{ALIAS}' points at the installed authority."))


def register_authority(mlc: MlflowClient, promotion_run_id: str, policies: PolicySet, lineage_doc: bytes,
                       entry: dict, txn: str | None = None, policies_dir: Path | str = "policies") -> dict:
    """Log the policy set as a model, register a new version and move the ``authority`` alias to it (the model
    of the authority folder's world: ``seg3a-authority`` for the default world's, suffixed otherwise). With
    ``txn`` (a promotion's transaction key, tagged on the model and the version) every step is done once: the
    version (or the logged model) an interrupted attempt made is found and used."""
    from tuning.common.worlds import authority_names

    names = authority_names(policies_dir)
    exp, model_name = experiment_id(mlc, names["experiment"]), names["model"]
    tags = {**_lineage_tags(entry, promotion_run_id), **({"txn": txn} if txn else {})}
    _ensure_model(mlc, model_name)
    version = _txn_version(mlc, txn, model_name)
    model_id = getattr(version, "model_id", None)
    if version is None:
        model = _logged_model(mlc, exp, promotion_run_id, policies, lineage_doc, entry, tags, txn)
        model_id = model.model_id
        source = mlc.get_logged_model(model.model_id).artifact_location
        version = mlc.create_model_version(model_name, source, run_id=promotion_run_id, tags=tags,
                                           description=_description(entry, tags, policies),
                                           model_id=model.model_id)   # a tracking server refuses the source alone
    mlc.set_registered_model_alias(model_name, ALIAS, version.version)
    mlc.update_registered_model(model_name, description=(
        f"The Segment 3A authority policy set; alias '{ALIAS}' = version {version.version} "
        f"(parameter_hash {policies.parameter_hash[:16]}). Latest: {_description(entry, tags, policies)}"))
    return {"name": model_name, "version": int(version.version), "alias": ALIAS, "model_id": model_id}


def _description(entry: dict, tags: dict, policies: PolicySet) -> str:
    prev = (entry.get("previous_authority") or {}).get("parameter_hash") or "none"
    return (f"{entry.get('decision')}: trial {entry.get('optuna_trial')} of {entry.get('study')} "
            f"(run {entry.get('mlflow_run_id')}, J={entry.get('J')}), witness "
            f"{tags['witness']}; parameter_hash {policies.parameter_hash[:16]} replaces {prev[:16]}")


def _txn_version(mlc: MlflowClient, txn: str | None, model_name: str):
    if not txn:
        return None
    found = mlc.search_model_versions(f"name = '{model_name}' and tags.txn = '{txn}'")
    return found[0] if found else None


def _logged_model(mlc: MlflowClient, exp: str, promotion_run_id: str, policies: PolicySet, lineage_doc: bytes,
                  entry: dict, tags: dict, txn: str | None):
    """The READY logged model of the policy set (a transaction's own, when an interrupted attempt made one)."""
    found = mlc.search_logged_models([exp], filter_string=f"tags.txn = '{txn}'") if txn else []
    model = found[0] if found else mlc.create_logged_model(
        exp, name="authority-policy-set", source_run_id=promotion_run_id, tags=tags,
        params={f"digest.{p}": d for p, d in policies.digests.items()}, model_type=MODEL_TYPE)
    if str(getattr(model.status, "name", model.status)).endswith("READY"):
        return model
    with tempfile.TemporaryDirectory(prefix="authority-model-") as tmp:
        policies.write(Path(tmp) / "policies")
        Path(tmp, "lineage.yaml").write_bytes(lineage_doc)
        Path(tmp, "MLmodel").write_text(_mlmodel(policies, entry))
        mlc.log_model_artifacts(model.model_id, tmp)
    mlc.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    return model
