"""``python -m engine bench --subsample``: how far the subsample estimator is from full scale, per gated metric.

For each seed the world is scored at full scale and at every fraction (:mod:`engine.chain.subsample`; the same
catalogue, the same policies, one chain cache). For every gate (hard B, stretch B+, fidelity F) the metric's
value at the fraction is compared with its full-scale value: mean and largest absolute error over the seeds,
and how often the gate's status (PASS/FAIL) agrees. The run verdict and the fidelity verdict are compared too,
and the chain's wall time at the fraction against full scale. Fractions of a study's fidelity schedule are
chosen from this table (README "At scale").
"""

from __future__ import annotations

import math
import time

DEFAULT_FRACTIONS = (0.05, 0.1, 0.2, 0.5)


def gated_values(gates: dict) -> dict[str, tuple[str, float, str]]:
    """gate id -> (metric, value as a number, status)."""
    out = {}
    for family in ("hard", "stretch", "fidelity"):
        for gid, g in (gates.get(family) or {}).items():
            value = g.get("value")
            try:
                x = float(value)
            except (TypeError, ValueError):
                x = math.nan
            out[gid] = (g["metric"], x, g["status"])
    return out


def _timed(fn):
    t0 = time.perf_counter()
    res = fn()
    return res, time.perf_counter() - t0


def _summary(rows: list[dict], fractions, seeds) -> dict:
    by_fraction = {}
    for f in fractions:
        mine = [r for r in rows if r["fraction"] == f]
        gates = {}
        for gid in sorted({g for r in mine for g in r["gates"]}):
            errs = [r["gates"][gid]["error"] for r in mine if gid in r["gates"]]
            finite = [abs(e) for e in errs if e == e]
            gates[gid] = {"metric": mine[0]["gates"][gid]["metric"],
                          "mean_abs_error": math.fsum(finite) / len(finite) if finite else None,
                          "max_abs_error": max(finite) if finite else None,
                          "status_agreement": sum(r["gates"][gid]["same_status"] for r in mine) / len(mine)}
        by_fraction[str(f)] = {
            "pairs_share": math.fsum(r["pairs_share"] for r in mine) / len(mine),
            "pairs_kept": math.fsum(r["pairs_kept"] for r in mine) / len(mine),
            "chain_cost_share": math.fsum(r["chain_seconds"] / r["full_seconds"] for r in mine) / len(mine),
            "verdict_agreement": sum(r["same_verdict"] for r in mine) / len(mine),
            "fidelity_agreement": sum(r["same_fidelity"] for r in mine) / len(mine),
            "gates": gates}
    return {"seeds": list(seeds), "fractions": list(fractions), "by_fraction": by_fraction}


def subsample_bench(policies, world, seeds, fractions=DEFAULT_FRACTIONS, scale: int = 1) -> dict:
    """The error table of the subsample estimator on ``world`` (``scale`` > 1: the synthetic world with that many
    times the merchants, one catalogue per seed), over ``seeds`` and ``fractions``."""
    from engine.chain.runner import ChainCache, run_chain
    from engine.metrics import fidelity_verdict, run_verdict
    from engine.world.model import outlets_for
    from engine.world.outlets import MERCHANTS_DEFAULT

    rows, pairs_full = [], 0
    for seed in seeds:
        cat = outlets_for(world, seed, MERCHANTS_DEFAULT * scale) if scale > 1 else None
        cache = ChainCache(max_entries=16)
        full, full_s = _timed(lambda: run_chain(policies, seed, world, outlets=cat, cache=ChainCache()))
        pairs_full = len(full.cores["s1"])
        ref = gated_values(full.gates)
        for f in fractions:
            sub, sub_s = _timed(lambda: run_chain(policies, seed, world, outlets=cat, cache=cache, fraction=f))
            got = gated_values(sub.gates)
            rows.append({"seed": seed, "fraction": f, "chain_seconds": sub_s, "full_seconds": full_s,
                         "pairs_share": len(sub.cores["s1"]) / pairs_full, "pairs_kept": len(sub.cores["s1"]),
                         "same_verdict": run_verdict(sub.gates) == run_verdict(full.gates),
                         "same_fidelity": fidelity_verdict(sub.gates) == fidelity_verdict(full.gates),
                         "gates": {gid: {"metric": m, "error": got[gid][1] - x, "same_status": got[gid][2] == s}
                                   for gid, (m, x, s) in ref.items() if gid in got}})
            del sub
        del full
    out = _summary(rows, fractions, seeds)
    out.update({"world": world.name, "scale": scale, "pairs_full": pairs_full})
    return out


def error_table_md(result: dict) -> str:
    """The largest absolute error per gate (rows) and fraction (columns), with the agreement rows below."""
    fr = result["fractions"]
    head = "| gate | metric | " + " | ".join(f"f={f}" for f in fr) + " |"
    rows = [head, "|---|---|" + "---|" * len(fr)]
    gates = result["by_fraction"][str(fr[0])]["gates"]
    for gid, g in gates.items():
        cells = []
        for f in fr:
            e = result["by_fraction"][str(f)]["gates"].get(gid, {}).get("max_abs_error")
            cells.append("-" if e is None else f"{e:.4f}")
        rows.append(f"| {gid.split('_')[0]} | `{g['metric']}` | " + " | ".join(cells) + " |")
    for label, key in (("pairs kept (share)", "pairs_share"), ("chain cost / full", "chain_cost_share"),
                       ("run verdict agrees", "verdict_agreement"), ("fidelity verdict agrees", "fidelity_agreement")):
        rows.append(f"| {label} | | " + " | ".join(f"{result['by_fraction'][str(f)][key]:.2f}" for f in fr) + " |")
    kept = (f"{result['by_fraction'][str(f)]['pairs_kept']:,.0f}" for f in fr)
    rows.append("| pairs kept (count) | | " + " | ".join(kept) + " |")
    return "\n".join(rows) + "\n"
