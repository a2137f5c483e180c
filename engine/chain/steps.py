"""The states of the chain as table rows: each a small pure function over its declared reads.

Read this file as the map: :data:`STATE_TABLE` says, for every state, what it reads and writes.
``docs/ARCHITECTURE.md`` embeds :func:`engine.chain.table.state_table_md` of it (a test keeps them equal).
"""

from __future__ import annotations

import copy
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from engine.core.errors import EngineError
from engine.core.hashing import canonical_json, rng_master, sha256_hex, table_digest
from engine.policies.policy_set import S3_DISPERSION_OFF, S4_SAFEGUARDS_OFF
from engine.states import s0_gate, s1_escalation, s2_priors, s3_plan, s3_shares, s4_counts, s6_validation
from engine.chain.table import PolicyRead, State
from engine.chain.subsample import subsample
from engine.core.version import ENGINE_VERSION
from engine.world.evidence import zone_people_shares
from engine.world.model import World, outlets_for

MIXTURE = "zone_mixture_policy"
STATE_STATUS = {s: "PASS" for s in ("S1", "S2", "S3", "S4", "S5")}  # every state that returned, returned PASS


def _in_order(frame: pd.DataFrame, keys: list[str]) -> bool:
    """True when the rows are already non-decreasing in ``keys`` (a stable sort would not move any)."""
    if len(frame) < 2:
        return True
    before = np.zeros(len(frame) - 1, dtype=bool)   # row i strictly before row i+1 on the keys seen so far
    tied = np.ones(len(frame) - 1, dtype=bool)
    for key in keys:
        col = pa.array(frame[key].array) if frame[key].dtype.kind not in "iubf" else frame[key].to_numpy()
        a, b = col[:-1], col[1:]
        if isinstance(col, np.ndarray):
            lt, eq = a < b, a == b
        else:
            lt = pc.less(a, b).to_numpy(zero_copy_only=False)
            eq = pc.equal(a, b).to_numpy(zero_copy_only=False)
        if (tied & ~lt & ~eq).any():
            return False
        before |= tied & lt
        tied &= eq
    return True


def canonical_outlets(outlets: pd.DataFrame) -> pd.DataFrame:
    """The catalogue in canonical row order, so the sealed digest does not depend on row order (a catalogue
    already in that order, as the synthetic upstream writes it, is not re-sorted)."""
    keys = ["merchant_id", "legal_country_iso"] + (["site_order"] if "site_order" in outlets.columns else [])
    if _in_order(outlets, keys):
        return outlets.reset_index(drop=True)
    return outlets.sort_values(keys, kind="mergesort").reset_index(drop=True)


def merchant_partitions(s1_core: pd.DataFrame, k: int) -> list[pd.DataFrame]:
    """Contiguous merchant ranges (pairs of one merchant never straddle two partitions)."""
    if k <= 1:
        return [s1_core]
    merchants = s1_core["merchant_id"].unique()
    bounds = [chunk[0] for chunk in np.array_split(merchants, k)[1:] if len(chunk)]
    cuts = np.searchsorted(s1_core["merchant_id"].to_numpy(), bounds)
    edges = [0, *cuts.tolist(), len(s1_core)]
    return [s1_core.iloc[a:b] for a, b in zip(edges[:-1], edges[1:]) if b > a]


def map_in_process(fn, per_task: list[tuple], *shared) -> list:
    return [fn(*args, *shared) for args in per_task]


def map_in_threads(fn, per_task: list[tuple], *shared) -> list:
    """The partitions' tasks on this process's cores (numpy, scipy and Arrow run outside the GIL), in task order."""
    with ThreadPoolExecutor(max_workers=min(len(per_task), os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda args: fn(*args, *shared), per_task))


AUTO_PARTITION_PAIRS = 200_000   # above this many pairs a run is split into one merchant range per core


def execution(partitions: int | None, mapper, pairs: int) -> tuple[int, object]:
    """(partitions, mapper) of a run: as given, or, by default, one merchant range per core run on threads
    for a large world and one range in order for a small one. Keyed streams make the output the same."""
    if partitions is None:
        partitions = min(os.cpu_count() or 1, 4) if pairs >= AUTO_PARTITION_PAIRS else 1
    if mapper is None:
        mapper = map_in_threads if partitions > 1 else map_in_process
    return partitions, mapper


# ---- the states ------------------------------------------------------------------------------------

def seal_world(r) -> tuple:
    """The catalogue (the keyed merchant subsample at a fraction < 1, :mod:`engine.chain.subsample`), the world digest
    that seals it, and the digest the RNG master is drawn from: the full world's, so a kept pair draws exactly
    what it draws at full scale (at fraction 1 the two digests are one)."""
    world: World = r["world"]
    full = r["catalogue_source"]()
    cat = subsample(full, r["fraction"])
    sealed = world.digest(cat)
    return cat, sealed, (sealed if cat is full else world.digest(full))


def seal_run(r) -> tuple:
    policies, seed, world_digest = r["policy_set"], r["seed"], r["world_digest"]
    world_rows = s0_gate.seal_world({"world": world_digest}, r["world"].versions)
    identity, receipt, sealed = s0_gate.seal(seed, world_digest, world_rows, policies.digests,
                                             {p: policies.version(p) for p in policies.raw}, ENGINE_VERSION)
    return identity, receipt, sealed


def rng(r) -> tuple:
    """The RNG master reads the seed and the world only: every candidate of a sweep draws the same numbers."""
    return (rng_master(r["seed"], r["draw_digest"]),)


def domain(r) -> tuple:
    """The pair domain D with its site counts, and S1's hash-law uniforms over it (drawn on first use): no seed,
    no policy, so one per world (or subsample) for every seed and candidate."""
    pairs = s1_escalation.pair_counts(r["catalogue"])
    return pairs, s1_escalation.DecisionDraws(pairs, s1_escalation.decision_master(r["universe_digest"]))


def escalation(r) -> tuple:
    return s1_escalation.escalate(r["pairs"], r["universe"].groupby("country_iso").size(), r.policy(MIXTURE),
                                  r["decisions"])


def priors(r) -> tuple:
    return (s2_priors.priors(r["universe"], r.policy("country_zone_alphas"), r.policy("zone_floor_policy")),)


def keys(r) -> tuple:
    """The seed's substream keys over the pair domain, each pair's hashed on first use: S1 candidates of one seed
    escalate different subsets of D, and a pair's keys do not depend on which."""
    return (s3_plan.keyring(r["pairs"], r["master"]),)


def plan(r) -> tuple:
    """The policy-free draws of S3/S4 per merchant range (:mod:`engine.states.s3_plan`): once per seed and S1
    outcome, whatever the candidate's priors, dispersion or safeguards."""
    s1_core = r["s1_core"]
    partitions, mapper = execution(r["partitions"], r["mapper"], len(s1_core))
    zones = s3_plan.zone_table(r["universe"])
    missing = s3_plan.missing_countries(s1_core, zones)
    if missing:
        raise EngineError(s3_plan.E_PRIOR_SURFACE, f"escalated country {missing[0]} has no priors")
    parts = merchant_partitions(s1_core, partitions)
    plans = mapper(s3_plan.plan_for, [(p,) for p in parts], zones, r["master"], r["keyring"])
    return plans, s3_plan.row_strings(plans)


def _joined(frames: list[pd.DataFrame], row_strings: dict) -> pd.DataFrame:
    """The partitions' rows in order, their string key columns being the plan's joined ones (the same Arrow data
    for every candidate of the seed, so the metric pack and S6 factorize them once: engine.metrics.keys)."""
    out = pd.concat(frames, ignore_index=True)
    if len(frames) > 1:
        for name, column in row_strings.items():
            if name in out.columns:
                out[name] = column
    return out


def shares(r) -> tuple:
    plans = r["plans"]
    _, mapper = execution(len(plans), r["mapper"], 0)
    disp = r.section(MIXTURE, "s3_dispersion", S3_DISPERSION_OFF)
    drawn = mapper(s3_shares.draw_shares, [(p,) for p in plans], r["s2_core"], disp)
    return (_joined([d[0] for d in drawn], r["row_strings"]),
            pd.concat([d[1] for d in drawn], ignore_index=True))


def _plan_shares(r) -> list[tuple]:
    """(plan, its rows of S3's share_drawn) per merchant range."""
    drawn, offset, out = r["s3_core"]["share_drawn"].to_numpy(), 0, []
    for p in r["plans"]:
        out.append((p, drawn[offset:offset + p.layout.rows]))
        offset += p.layout.rows
    return out


def rounding(r) -> tuple:
    """S4's policy-free half per merchant range (targets, floors, ranks: :func:`engine.states.s4_counts.rounding`):
    once per S3 output, whatever the candidate's safeguards."""
    tasks = _plan_shares(r)
    _, mapper = execution(len(tasks), r["mapper"], 0)
    return (mapper(s4_counts.rounding, tasks),)


def _integerise(plan, shares, rounded, guards, people):
    return s4_counts.integerise(plan, shares, guards, rounded, people)


def counts(r) -> tuple:
    frames, counters = [], {}
    tasks = [(p, shares, rd) for (p, shares), rd in zip(_plan_shares(r), r["roundings"], strict=True)]
    guards = r.section(MIXTURE, "s4_safeguards", S4_SAFEGUARDS_OFF)
    people = zone_people_shares(r["evidence"]) if guards.get("enabled") else None
    _, mapper = execution(len(tasks), r["mapper"], 0)
    for frame, c in mapper(_integerise, tasks, guards, people):
        frames.append(frame)
        for k, v in c.items():
            counters[k] = counters.get(k, 0) + v if not isinstance(v, bool) else v
    return _joined(frames, r["row_strings"]), counters


def assemble_cores(r) -> tuple:
    """The lineage-free tables every later step reads: S4's counts carry S3's share sums and S2's alpha sums
    (as published), and zone_alloc's core is S4's with site_count."""
    s1, s2, s3, s4 = r["s1_core"], r["s2_core"], r["s3_core"], r["s4_core"]
    layouts = [p.layout for p in r["plans"]]
    row_prior = np.concatenate([lay.row_prior for lay in layouts]) if layouts else np.zeros(0, dtype=np.int64)
    s4 = s4.assign(share_sum_country=s3["share_sum_country"].to_numpy(),
                   alpha_sum_country=s2["alpha_sum_country"].to_numpy()[row_prior])
    sites = s1["site_count"].to_numpy(dtype=np.int64)[s1["is_escalated"].to_numpy(dtype=bool)]
    k = np.concatenate([lay.pair_k for lay in layouts]) if layouts else np.zeros(0, dtype=np.int64)
    return {"s1": s1, "s2": s2, "s3": s3, "s4": s4, "zone_alloc": s4.assign(site_count=np.repeat(sites, k))},


def section(name: str):
    """The state computing the metric pack's ``name`` section from that state's core table alone."""
    def measure(r) -> tuple:
        from engine.metrics.pack import s1_metrics, s2_metrics, s3_metrics   # each reads its own table only

        return {"s1": s1_metrics, "s2": s2_metrics, "s3": s3_metrics}[name](r[f"{name}_core"]),
    measure.__name__ = measure.__qualname__ = f"{name}_section"
    return measure


def fidelity_prior(r) -> tuple:
    """The fidelity section's S2 part (the prior's JSD against the population), or None without evidence."""
    from engine.metrics.fidelity import prior_fidelity

    return (None if r["evidence"] is None else prior_fidelity(r["s2_core"], r["evidence"]),)


def score(r) -> tuple:
    """The metric pack and gates on the core tables (fidelity included when the world has evidence); the S1-S3
    sections come from their own states (cached while their table is unchanged)."""
    from engine.metrics import evaluate_gates, fidelity_verdict, metric_pack, run_verdict

    # copies: a run's pack is its own to keep or edit, the cached sections are every later candidate's
    given = {k: copy.deepcopy(r[f"pack_{k}"]) for k in ("s1", "s2", "s3")}
    pack = metric_pack(r["cores"], r["evidence"], {**given, "fidelity_prior": r["pack_prior"]})
    gates = evaluate_gates(pack)
    hard_fail = sorted(g for g, v in gates["hard"].items() if v["status"] != "PASS")
    realism = {"mode": r["realism_mode"], "verdict": run_verdict(gates), "fidelity_verdict": fidelity_verdict(gates),
               "hard_failed": hard_fail,
               "stretch_failed": sorted(g for g, v in gates["stretch"].items() if v["status"] != "PASS")}
    return pack, gates, realism, bool(r["realism_mode"] == "block" and hard_fail)


def upstream_checks(r) -> tuple:
    """S6's checks of S1-S3 and the RNG events, with the codes S4's checks compare against."""
    from engine.publish.members import trace_totals

    events = r["events"]
    return (s6_validation.check_upstream(r["s1_core"], r["s2_core"], r["s3_core"], events, trace_totals(events),
                                         r["universe"]),)


def structural(r) -> tuple:
    """S6's checks of S0-S4, in memory on the core tables (those of S1-S3 from ``S6.upstream``); the run's structural
    verdict (a hard realism miss in block mode fails it too). S5's checks need S5's bytes:
    :mod:`engine.publish.bundle` runs them."""
    found = s6_validation.validate_s4(r["identity"], r["receipt"], r["sealed"], r["s6_upstream"], r["cores"]["s4"],
                                      r["policy_set"].digests, STATE_STATUS)
    failed = any(n > 0 and s6_validation.CHECKS[c] == "ERROR" for c, n in found.counts.items())
    return found, ("FAIL" if failed or r["realism_blocks"] else "PASS")


STATE_TABLE: tuple[State, ...] = (
    State("S0.world", ("world", "catalogue_source", "fraction"), (), ("catalogue", "world_digest", "draw_digest"),
          seal_world, doc="the outlet catalogue in canonical order (or its keyed subsample), the world digest that "
                          "seals it, and the full world's digest the draws are keyed by"),
    State("S0", ("seed", "world", "world_digest", "policy_set"), (), ("identity", "receipt", "sealed"),
          seal_run, cached=False, doc="run identity, gate receipt, sealed inputs"),
    State("S0.rng", ("seed", "draw_digest"), (), ("master",), rng, cached=False,
          doc="the RNG master (seed and world only: common random numbers for every candidate)"),
    State("S1.domain", ("catalogue", "universe_digest"), (), ("pairs", "decisions"), domain,
          doc="the pair domain D (site count per merchant x country) and S1's hash-law uniforms over D (no seed, "
              "no policy: one per world for every seed and candidate)"),
    State("S1", ("pairs", "decisions", "universe"), (PolicyRead(MIXTURE, ("theta_mix", "rules", "s1_smoothing")),),
          ("s1_core", "smoothed"), escalation, doc="escalation queue: rule ladder, smoothing band, theta lottery"),
    State("S2", ("universe",), (PolicyRead("country_zone_alphas"), PolicyRead("zone_floor_policy", ("floors",))),
          ("s2_core",), priors, doc="country x zone Dirichlet priors with floors"),
    State("S3.keys", ("pairs", "master"), (), ("keyring",), keys,
          doc="the seed's keyed-substream keys over the pair domain D, each pair's hashed on first use (no policy: "
              "one per seed, shared by every S1 outcome)"),
    State("S3.plan", ("s1_core", "universe", "master", "keyring", "partitions"), (), ("plans", "row_strings"), plan,
          runtime=("mapper",),
          doc="per merchant range: the escalated pairs laid out over Z(c) and their keyed Dirichlet uniforms, "
              "stream ids and key columns, and the ranges' string columns joined (no policy: drawn once per seed "
              "and S1 outcome)"),
    State("S3", ("plans", "row_strings", "s2_core"), (PolicyRead(MIXTURE, ("s3_dispersion",)),),
          ("s3_core", "events"), shares, runtime=("mapper",),
          doc="Dirichlet shares per escalated pair and the RNG events"),
    State("S4.rounding", ("plans", "s3_core"), (), ("roundings",), rounding, runtime=("mapper",),
          doc="per merchant range: S3's shares as S4 reads them before any safeguard, the fractional targets, floors, "
              "remainders and residual ranks (no policy: once per S3 output, shared by every S4 candidate)"),
    State("S4", ("plans", "row_strings", "s3_core", "roundings", "evidence"), (PolicyRead(MIXTURE, ("s4_safeguards",)),),
          ("s4_core", "s4_counters"), counts, runtime=("mapper",), doc="integer zone counts (largest remainder)"),
    State("S4.cores", ("s1_core", "s2_core", "s3_core", "s4_core", "plans"), (), ("cores",),
          assemble_cores, cached=False, doc="the core tables of S1-S4 and zone_alloc's core"),
    *(State(f"metrics.{k}", (f"{k}_core",), (), (f"pack_{k}",), section(k),
            doc=f"the metric pack's {k.upper()} section, from {k}_core alone (kept while {k.upper()} is)")
      for k in ("s1", "s2", "s3")),
    State("metrics.prior", ("s2_core", "evidence"), (), ("pack_prior",), fidelity_prior,
          doc="the fidelity section's S2 part, prior against population (kept while S2 is)"),
    State("metrics", ("cores", "evidence", "realism_mode", "pack_s1", "pack_s2", "pack_s3", "pack_prior"), (),
          ("pack", "gates", "realism", "realism_blocks"), score, cached=False,
          doc="metric pack (S4, zone_alloc and fidelity sections measured here), gates (plan + fidelity), verdicts"),
    State("S6.upstream", ("s1_core", "s2_core", "s3_core", "events", "universe"), (), ("s6_upstream",),
          upstream_checks, doc="S6's checks of S1-S3 and the RNG events, with the codes S4's are compared against (no "
                               "policy: kept while S1-S3 are, shared by every S4 candidate)"),
    State("S6.core", ("identity", "receipt", "sealed", "cores", "s6_upstream", "policy_set", "realism_blocks"),
          (), ("s6_core", "structural_status"), structural, cached=False,
          doc="S6's checks of S0-S4 in memory (S5's run with the bytes, in engine.publish.bundle)"),
)


def _catalogue_source(world: World, seed: int, outlets, merchants) -> tuple:
    """(a thunk producing the catalogue, the content digest of what it will produce). A world's own catalogue
    is read once per process (``World.catalogue``) and does not depend on the seed: its key has no seed, so
    S0.world and S1 are computed once for every seed and candidate."""
    if outlets is not None:
        return (lambda: canonical_outlets(outlets)), f"given:{table_digest(outlets, None)}"  # rows as given
    if world.catalogue is not None:
        return (lambda: world.catalogue), f"world:{world.world_static_digest}:{world.catalogue_digest}"
    n = merchants

    def generate():
        return outlets_for(world, seed) if n is None else outlets_for(world, seed, n)
    return generate, sha256_hex(canonical_json([world.world_static_digest, seed, n]))


def run_inputs(policies, seed: int, world: World, outlets, merchants, realism_mode: str, partitions: int,
               mapper, fraction: float = 1.0) -> tuple[dict, dict]:
    """The run's inputs and their content digests (the leaves every cache key is derived from)."""
    source, source_digest = _catalogue_source(world, seed, outlets, merchants)
    values = {"seed": seed, "world": world, "catalogue_source": source, "universe": world.universe,
              "universe_digest": world.universe_digest, "evidence": world.evidence, "policy_set": policies, "realism_mode": realism_mode,
              "partitions": partitions, "mapper": mapper, "fraction": fraction}
    digests = {"seed": str(seed), "world": world.world_static_digest, "catalogue_source": source_digest,
               "universe": world.universe_digest,
               "universe_digest": world.universe_digest, "evidence": world.world_static_digest,
               "policy_set": policies.parameter_hash, "realism_mode": realism_mode, "fraction": repr(float(fraction)),
               # the plan's merchant ranges are its layout (a list per range, read by S3, S4.rounding and S4): a plan
               # laid out in other ranges is never this run's, nor the roundings drawn from it (the tables are the same)
               "partitions": repr(partitions)}
    return values, digests
