"""P0 metric pack: run one policy set on one seed and publish its metric pack and gates.

    python -m tuning.baseline (--authored | --authority) [--seed 42] [--policies policies] [--out reports]
                              [--runs-root runs] [--world DIR]

``--authored`` measures the authored baseline (the plan's P0: the policies ``python -m engine author``
writes for the world, built in memory); ``--authority`` (the default) measures the current authority in
``--policies``. The JSON (``measures``) and the Markdown heading name which one was measured.

Writes ``<out>/segment3a_p0_baseline_metrics_<run_id>.json`` (METRICS §15 keys, sorted, indent 2)
and ``.md`` (the gate table), materialises the run under ``<runs-root>/<run_id>/`` and prints the
Markdown table. Exit 0 whatever the verdict (the pack records it); exit 2 on an engine error.
"""

from __future__ import annotations

from pathlib import Path

from engine import run_verdict, thresholds
from tuning.report.files import (compact_gates, gate_table_md, json_text, atomic_write_text, run_block,
                                 table_globs, utc_now)

P0_JSON = "segment3a_p0_baseline_metrics_{rid}.json"
P0_MD = "segment3a_p0_baseline_metrics_{rid}.md"


def authority_inputs(policies_dir: str | Path, world_dir: str | Path | None = None):
    """(PolicySet, World) of the authority: the policy directory and the given world (else the folder's own)."""
    from engine import PolicySet
    from tuning.common import worlds

    policies = PolicySet.from_dir(policies_dir)
    world = worlds.load(world_dir) if world_dir is not None else worlds.authority_world(policies_dir)
    return policies, world


SUBJECTS = {"authored": "the authored baseline", "authority": "the current authority"}


def p0_pack_document(res, pack: dict, gates: dict, verdict: str, runs_root: str | Path | None,
                     measures: dict | None = None) -> dict:
    """The P0 baseline pack (METRICS §15) of one chain result."""
    block = run_block(res, runs_root)
    ident = res.identity
    return {
        "generated_utc": utc_now(),
        "phase": "P0",
        "measures": measures or {"subject": "authority"},
        "segment": "3A",
        "baseline_authority": {
            **block,
            "lineage_tokens": {k: ident[k] for k in ("seed", "manifest_fingerprint", "parameter_hash", "run_id")},
        },
        "paths": table_globs(block["run_root"], ident) if block["run_root"] else {},
        "thresholds": thresholds(),
        "metrics": pack,
        "gates": compact_gates(gates),
        "verdict": verdict,
    }


def p0_markdown(doc: dict, gates: dict) -> str:
    auth = doc["baseline_authority"]
    head = [
        f"# Segment 3A — P0 metrics of {SUBJECTS[doc['measures']['subject']]} (run `{auth['run_id']}`)",
        "",
        f"- measures: **{doc['measures']['subject']}** ({doc['measures'].get('policies')})",
        f"- seed: `{auth['seed']}`",
        f"- manifest_fingerprint: `{auth['manifest_fingerprint']}`",
        f"- parameter_hash: `{auth['parameter_hash']}`",
        f"- run_root: `{auth['run_root']}`",
        f"- verdict: **{doc['verdict']}**",
        "",
        "## Gates (hard B, then stretch B+)",
        "",
        "",
    ]
    return "\n".join(head) + gate_table_md(gates) + "\n"


def p0(policies_dir, subject: str, seed: int, out, runs_root, world, record: bool) -> dict:
    """The P0 pack of the authored baseline or of the authority in ``policies_dir`` on ``world``: written,
    shown, optionally recorded in the decision ladder."""
    from engine import run_chain
    from tuning.common import worlds

    if subject == "authored":
        from tuning.authority.authoring import authored_policies

        policies = authored_policies(world)
    else:
        policies = authority_inputs(policies_dir)[0]
    measures = {"subject": subject, "policies": policies.source, "parameter_hash": policies.parameter_hash,
                "world": worlds.record(world)}
    res = run_chain(policies, seed, world, run_root=runs_root)
    pack, gates = res.pack, res.gates          # the chain's own pack: fidelity included for the world's evidence
    verdict = run_verdict(gates)
    doc = p0_pack_document(res, pack, gates, verdict, runs_root, measures)
    rid = res.identity["run_id"]
    out = Path(out)
    md = p0_markdown(doc, gates)
    atomic_write_text(out / P0_JSON.format(rid=rid), json_text(doc))
    atomic_write_text(out / P0_MD.format(rid=rid), md)
    print(md, end="")
    print(f"\nwrote {out / P0_JSON.format(rid=rid)}")
    if record:
        from tuning.authority.ladder import record_step

        failed = sorted(g for fam in ("hard", "stretch", "fidelity") for g, v in gates.get(fam, {}).items()
                        if v["status"] == "FAIL")
        step = record_step("P0", verdict, policies_dir=Path(policies_dir), measured=policies, artifacts={
            P0_JSON.format(rid=rid): json_text(doc).encode(), P0_MD.format(rid=rid): md.encode()},
            evidence={"seed": seed, "engine_run_id": rid, "measures": subject, "failed_gates": failed},
            metrics={f"gate.{g}": float(v["value"]) for fam in ("hard", "stretch") for g, v in gates[fam].items()
                     if isinstance(v["value"], (int, float))})
        print(f"recorded P0 {verdict} as MLflow run {step['mlflow_run_id']}")
    return doc
