"""The records of an authority change, taken as one transaction with its policy files (tuning.authority.txn).

A promotion's intent (``policies/.install-intent.json``, written atomically before anything else) holds every
step with everything it needs: the policy files and the lineage (renamed into place first), then, in order,

- ``authority_tags``: the promoted run ``authority=current``, every other current run ``superseded``;
- ``promotion_run``: the promotion's own run in the ``authority`` experiment (tags, the replayed J, artifacts:
  the new and the previous policy files, the lineage, the witness and the replayed metric pack), FINISHED;
- ``register``: the policy set as a new version of the registered model, the alias ``authority`` on it;
- ``source_tags``: the promoted run names its promotion run, the superseded run its end;
- ``ladder``: each ladder step (a reopening, then the promotion's own), its run and its ``ladder.yaml`` entry;
- ``clear_authority`` (an authored install, which has no run): no run stays current, the alias is removed.

Every MLflow record of a transaction carries the tag ``txn`` = the intent's key, and each step looks for its
record before it makes one: a step a killed process finished is found and skipped, one it left half-done (a
promotion run still RUNNING) is finished. :func:`run_steps` runs them all, from the install itself or from any
next command that takes the authority lock, and only then is the intent removed.
"""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path

from engine import PolicySet

PROMOTION_RUN = "$promotion_run_id"   # in a step's data: the id of this transaction's promotion run
SCOPE_TAG = "authority_folder"        # on a current run: the identity of the folder it is current in


def policy_set(files: dict[str, bytes], last: str) -> PolicySet:
    return PolicySet({name[: -len(".yaml")]: data for name, data in files.items() if name != last})


def encode(files: dict[str, bytes]) -> dict[str, str]:
    return {name: base64.b64encode(data).decode("ascii") for name, data in files.items()}


def _resolve(value, state: dict):
    if isinstance(value, dict):
        return {k: _resolve(v, state) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, state) for v in value]
    return state.get("promotion_run_id", value) if value == PROMOTION_RUN else value


def run_steps(policies_dir: Path, intent: dict, files: dict[str, bytes]) -> dict:
    """Every step of the intent, in order, each at most once (see the module docstring); returns what they
    made (``promotion_run_id``, ``registered``, ``ladder``)."""
    from tuning.trail.tracking import client

    mlc = client()
    state: dict = {"ladder": []}
    for step in intent["steps"]:
        STEPS[step["kind"]](mlc, policies_dir, intent, files, _resolve(step, state), state)
    return state


def _authority_tags(mlc, policies_dir, intent, files, step, state) -> None:
    tag_authority(policies_dir, step["run_id"], step.get("run_tags") or {})


def _clear_authority(mlc, policies_dir, intent, files, step, state) -> None:
    """An install without a run (the authored baseline): no run stays ``current`` and the alias goes."""
    from tuning.trail.tracking import MlflowException

    from tuning.trail.registry import ALIAS
    from tuning.common.worlds import authority_names

    tag_authority(policies_dir, None, {})
    try:
        mlc.delete_registered_model_alias(authority_names(policies_dir)["model"], ALIAS)
    except MlflowException:
        pass   # no registered model or no alias: nothing points at an authority


def _promotion_run(mlc, policies_dir, intent, files, step, state) -> None:
    from tuning.trail.tracking import experiment_id, log_batch
    from tuning.common.worlds import authority_names

    exp = experiment_id(mlc, authority_names(policies_dir)["experiment"])
    found = mlc.search_runs([exp], f"tags.txn = '{intent['key']}' and tags.run_kind = 'promotion'")
    run_id = found[0].info.run_id if found else mlc.create_run(
        exp, run_name=step["run_name"], tags={**step["tags"], "txn": intent["key"]}).info.run_id
    state["promotion_run_id"] = run_id
    if found and found[0].info.status == "FINISHED":
        return
    log_batch(mlc, run_id, metrics=step["metrics"])
    with tempfile.TemporaryDirectory(prefix="promotion-") as tmp:
        policy_set(files, intent["last"]).write(Path(tmp, "policies"))
        PolicySet({p: base64.b64decode(d) for p, d in step["previous_policies"].items()}).write(
            Path(tmp, "previous_policies"))
        Path(tmp, intent["last"]).write_bytes(files[intent["last"]])
        for name, text in step["texts"].items():
            Path(tmp, name).write_text(text, encoding="utf-8")
        mlc.log_artifacts(run_id, tmp)
    mlc.set_terminated(run_id)


def _register(mlc, policies_dir, intent, files, step, state) -> None:
    from tuning.trail.registry import register_authority

    state["registered"] = register_authority(mlc, state["promotion_run_id"], policy_set(files, intent["last"]),
                                             files[intent["last"]], step["entry"], txn=intent["key"],
                                             policies_dir=policies_dir)


def _source_tags(mlc, policies_dir, intent, files, step, state) -> None:
    """The promoted trial run names its promotion; the superseded authority run its end."""
    from tuning.trail.tracking import MlflowException

    from tuning.trail.tracking import log_batch

    log_batch(mlc, step["run_id"], tags={"promotion_run_id": state["promotion_run_id"]})
    previous = step.get("previous_run")
    if previous and previous != step["run_id"]:
        try:
            log_batch(mlc, previous, tags={"superseded_utc": step["now"]})
        except MlflowException:
            pass  # the superseded run lives in another tracking store: the lineage file still records it


def _ladder(mlc, policies_dir, intent, files, step, state) -> None:
    from tuning.authority.ladder_steps import record_unlocked

    state["ladder"].append(record_unlocked(
        step["phase"], step["decision"], policies_dir=Path(policies_dir), evidence=step.get("evidence"),
        metrics=step.get("metrics"), source_run_id=step.get("source_run_id"), note=step.get("note"),
        txn=intent["key"], parameter_hash=step.get("parameter_hash")))


def tag_authority(policies_dir: Path, run_id: str | None, run_tags: dict) -> None:
    """Tag ``run_id`` ``authority=current`` (with the folder's identity, when it has one) and every other
    ``current`` run of the folder ``superseded``: whatever happened before (a kill between two tag writes, two
    promotes), exactly one run is current there (none when ``run_id`` is None: an authority without a run, the
    authored baseline). Another folder's authority keeps its tag (:func:`current_authority_runs`)."""
    from tuning.trail.tracking import MlflowException, client, log_batch

    from tuning.common.worlds import authority_scope

    mlc = client()
    scope = authority_scope(policies_dir)
    if run_id is not None:
        tags = {**{k: str(v) for k, v in run_tags.items()}, "authority": "current"}
        if scope:   # one run may be current in several folders (the same trial promoted into two)
            tags[SCOPE_TAG] = _scopes(mlc.get_run(run_id).data.tags, add=scope)
        log_batch(mlc, run_id, tags=tags)
    for run in current_authority_runs(mlc, policies_dir):
        if run.info.run_id != run_id:
            rest = _scopes(run.data.tags, drop=scope) if scope else ""
            tags = {SCOPE_TAG: rest} if rest else {"authority": "superseded", "superseded_by": run_id or "none",
                                                   **({SCOPE_TAG: ""} if scope else {})}
            try:
                log_batch(mlc, run.info.run_id, tags=tags)
            except MlflowException:
                pass


def _scopes(tags: dict, add: str | None = None, drop: str | None = None) -> str:
    """A run's ``authority_folder`` tag (the folders it is current in, comma-separated) with ``add``/without
    ``drop``."""
    have = [s for s in str(tags.get(SCOPE_TAG, "")).split(",") if s and s != drop]
    return ",".join(sorted(set(have + ([add] if add else []))))


def current_authority_runs(mlc, policies_dir: str | Path) -> list:
    """The runs tagged ``authority=current`` in this authority folder: those tagged with its identity
    (:func:`tuning.common.worlds.authority_scope`), or, for a folder without one, those of its world (the ``world``
    tag; a run without one is the default world's) that no folder identity claims. Another folder's or another
    world's promotion or authored install never touches them."""
    from engine import default_world
    from tuning.common.worlds import authority_scope, bound_world
    from tuning.trail.tracking import search_all

    scope, fingerprint = authority_scope(policies_dir), bound_world(policies_dir)["fingerprint"]
    runs = [run for exp in mlc.search_experiments()
            for run in search_all(mlc, [exp.experiment_id], "tags.authority = 'current'")]
    if scope is not None:   # this folder's own
        return [run for run in runs if scope in str(run.data.tags.get(SCOPE_TAG, "")).split(",")]
    return [run for run in runs if not run.data.tags.get(SCOPE_TAG)
            and (run.data.tags.get("world") or default_world().fingerprint) == fingerprint]


STEPS = {"authority_tags": _authority_tags, "clear_authority": _clear_authority, "promotion_run": _promotion_run,
         "register": _register, "source_tags": _source_tags, "ladder": _ladder}


def texts(witness: dict) -> dict[str, str]:
    """The promotion run's JSON artifacts: the witness (without the replayed record) and the replayed record."""
    brief = {k: v for k, v in witness.items() if k != "doc"}
    return {"witness.json": json.dumps(brief, indent=2, sort_keys=True, default=str),
            "metric_pack.json": json.dumps(witness["doc"], indent=2, sort_keys=True, default=str)}
