"""The chain S0 -> S7 (Kedro-style pipeline of pure states) with the rerun matrix as a cache.

Each state's core output is keyed by the digest of everything it reads (DESIGN §6); a
candidate that changes only the floor policy reuses the world seal and S1, and recomputes
S2 -> S7. Lineage columns, S5's digests, S6 and S7 always follow the run's identity.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from engine import ENGINE_VERSION
from engine.hashing import rng_master
from engine.policies import PolicySet
from engine.policies.policy_set import S3_DISPERSION_OFF, S4_SAFEGUARDS_OFF
from engine.states import s0_gate, s1_escalation, s2_priors, s3_shares, s4_counts, s5_egress, s6_validation
from engine.states.common import missing_prior_countries, zone_layout
from engine.states.lineage import lineage_values, with_lineage
from engine.states.s7_bundle import index_document, passed_flag
from engine.strict import check_uint64
from engine.errors import EngineError
from engine.world.model import World, default_world, outlets_for

STATES = ("S0", "S1", "S2", "S3", "S4", "S5", "S6", "S7")


class ChainCache:
    """A small LRU of state outputs keyed by the digests of their inputs."""

    def __init__(self, max_entries: int = 64) -> None:
        self._entries: OrderedDict = OrderedDict()
        self.max_entries = max_entries

    def get(self, key: tuple):
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        return None

    def put(self, key: tuple, value) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


@dataclass
class ChainResult:
    identity: dict
    tables: dict
    events: pd.DataFrame
    seconds: dict
    reused: set
    receipt: dict
    sealed: list
    universe_doc: dict
    s6_report: dict
    s6_issues: pd.DataFrame
    s6_receipt: dict
    s7: dict
    members: list = field(default_factory=list)
    index: dict = field(default_factory=dict)
    flag: str = ""
    counters: dict = field(default_factory=dict)
    pack: dict | None = None
    gates: dict | None = None
    run_dir: Path | None = None


class _Timer:
    def __init__(self) -> None:
        self.seconds = {s: 0.0 for s in STATES}

    def run(self, state: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds[state] += time.perf_counter() - t0


def canonical_outlets(outlets: pd.DataFrame) -> pd.DataFrame:
    """The catalogue in canonical row order, so the sealed digest does not depend on row order."""
    keys = ["merchant_id", "legal_country_iso"] + (["site_order"] if "site_order" in outlets.columns else [])
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


def _map_in_process(fn, per_task: list[tuple], *shared) -> list:
    return [fn(*args, *shared) for args in per_task]


def _cached(cache: ChainCache, key: tuple, reused: set, state: str, fn):
    hit = cache.get(key)
    if hit is not None:
        reused.add(state)
        return hit
    value = fn()
    cache.put(key, value)
    return value


def run_chain(policies: PolicySet, seed: int, world: World | None = None, *, outlets: pd.DataFrame | None = None,
              cache: ChainCache | None = None, run_root: str | Path | None = None,
              realism_mode: str = "observe", merchants: int | None = None, partitions: int = 1,
              mapper=None) -> ChainResult:
    """Run S0 -> S7 for (policies, seed, world); materialise under ``run_root`` when given.

    ``partitions`` > 1 executes S3/S4 merchant-partition by merchant-partition (contiguous merchant
    ranges) and concatenates: keyed streams make the result byte-identical to one partition.
    ``mapper(fn, per_task_args, *shared)`` runs the partitions' S3/S4 tasks (default: in order, in this
    process; :mod:`engine.cluster` runs them as Dask tasks) and returns their results in task order.
    """
    mapper = mapper or _map_in_process
    from engine import members as member_builder  # local: keeps the state modules import-light

    if realism_mode not in ("observe", "block"):
        raise EngineError("E3A_CLI_001_USAGE", f"realism mode must be observe or block, not {realism_mode!r}")
    check_uint64(seed, "seed", "E3A_CLI_001_USAGE")  # le64 would wrap it silently
    world = world or default_world()
    cache = cache if cache is not None else ChainCache()
    timer, reused = _Timer(), set()
    mixture = policies.doc("zone_mixture_policy")

    # S0: seal the world (cached by world + seed) and the policy set (always)
    def seal_world():
        cat = canonical_outlets(outlets) if outlets is not None else (
            outlets_for(world, seed) if merchants is None else outlets_for(world, seed, merchants))
        return cat, world.digest(cat)

    wkey = ("world", world.name, world.universe_digest, int(seed), merchants,
            None if outlets is None else id(outlets))
    cat, world_digest = timer.run("S0", _cached, cache, wkey, reused, "S0.world", seal_world)
    world_rows = s0_gate.seal_world({"world": world_digest}, world.versions)
    identity, receipt, sealed = timer.run(
        "S0", s0_gate.seal, seed, world_digest, world_rows, policies.digests,
        {p: policies.version(p) for p in policies.raw}, ENGINE_VERSION)
    master = rng_master(seed, world_digest)

    # S1: reads the outlet catalogue, Z(c) sizes and the ladder/theta/smoothing of the mixture policy
    s1_key = ("S1", world_digest, policies.section_digest("zone_mixture_policy", "theta_mix", "rules", "s1_smoothing"))
    zone_count = world.universe.groupby("country_iso").size()
    d_master = s1_escalation.decision_master(world.universe_digest)
    s1_core, smoothed = timer.run("S1", _cached, cache, s1_key, reused, "S1", lambda: s1_escalation.escalate(
        s1_escalation.pair_counts(cat), zone_count, mixture, d_master))

    # S2: reads Z(c), the alpha pack and the floor policy
    s2_key = ("S2", world.universe_digest, policies.digests["country_zone_alphas"],
              policies.section_digest("zone_floor_policy", "floors"))
    s2_core = timer.run("S2", _cached, cache, s2_key, reused, "S2", lambda: s2_priors.priors(
        world.universe, policies.doc("country_zone_alphas"), policies.doc("zone_floor_policy")))

    # S3: reads S1, S2, the dispersion block and the RNG master
    disp = policies.section("zone_mixture_policy", "s3_dispersion", S3_DISPERSION_OFF)
    s3_key = ("S3", s1_key, s2_key, policies.section_digest("zone_mixture_policy", "s3_dispersion"), master.hex())

    def run_s3():
        missing = missing_prior_countries(s1_core, s2_core)
        if missing:
            raise EngineError("E3A_S3_003_PRIOR_SURFACE_INCOMPLETE", f"escalated country {missing[0]} has no priors")
        parts = [zone_layout(p, s2_core) for p in merchant_partitions(s1_core, partitions)]
        drawn = mapper(s3_shares.draw_shares, [(lay,) for lay in parts], s2_core, disp, master)
        return (parts, pd.concat([d[0] for d in drawn], ignore_index=True),
                pd.concat([d[1] for d in drawn], ignore_index=True))

    part_layouts, s3_core, events = timer.run("S3", _cached, cache, s3_key, reused, "S3", run_s3)
    layout = part_layouts[0] if len(part_layouts) == 1 else zone_layout(s1_core, s2_core)

    # S4: reads S1 (site counts), S3 shares and the safeguard block
    guards = policies.section("zone_mixture_policy", "s4_safeguards", S4_SAFEGUARDS_OFF)
    s4_key = ("S4", s3_key, policies.section_digest("zone_mixture_policy", "s4_safeguards"))
    def run_s4():
        shares, offset, tasks, frames, counters = s3_core["share_drawn"].to_numpy(), 0, [], [], {}
        for lay in part_layouts:
            tasks.append((lay, shares[offset:offset + lay.rows]))
            offset += lay.rows
        for frame, c in mapper(s4_counts.integerise, tasks, guards, master):
            frames.append(frame)
            for k, v in c.items():
                counters[k] = counters.get(k, 0) + v if not isinstance(v, bool) else v
        return pd.concat(frames, ignore_index=True), counters

    s4_core, s4_counters = timer.run("S4", _cached, cache, s4_key, reused, "S4", run_s4)

    # S5: lineage, egress and the routing universe hash
    def run_s5():
        lin = lineage_values(identity, policies)
        s2_alpha = s2_core["alpha_sum_country"].to_numpy()[layout.row_prior]
        tables = {
            "s1": with_lineage(s1_core, "s1", lin),
            "s2": with_lineage(s2_core, "s2", lin),
            "s3": with_lineage(s3_core, "s3", lin),
            "s4": with_lineage(s4_core, "s4", lin, extra={"share_sum_country": s3_core["share_sum_country"].to_numpy(),
                                                          "alpha_sum_country": s2_alpha}),
        }
        tables["zone_alloc"], udoc = s5_egress.egress(tables["s1"], tables["s2"], tables["s4"], lin,
                                                      policies.digests)
        return tables, udoc

    tables, universe_doc = timer.run("S5", run_s5)
    status = {s: "PASS" for s in ("S1", "S2", "S3", "S4", "S5")}

    # S6: structural validation (+ realism gates in observe or block mode)
    def run_s6():
        trace = member_builder.trace_totals(events)
        report, issues = s6_validation.validate(identity, receipt, sealed, tables, events, trace, universe_doc,
                                                policies.digests, status, world.universe)
        pack, gates = member_builder.realism(tables, report, realism_mode, world.evidence)
        return report, issues, pack, gates

    s6_report, s6_issues, pack, gates = timer.run("S6", run_s6)

    # S7: members -> index -> flag (only when S6 passes)
    def run_s7():
        members, s6_receipt = member_builder.build_members(identity, receipt, sealed, tables, events, universe_doc,
                                                           s6_report, s6_issues)
        if s6_report["overall_status"] != "PASS":
            return members, s6_receipt, {}, "", {"status": "FAIL", "error_code": "E3A_S7_001_S6_NOT_PASS"}
        from engine.hashing import sha256_hex
        from engine.serialize import json_bytes
        index = index_document(identity, members, sha256_hex(json_bytes(s6_receipt)))
        flag = passed_flag(index)
        return members, s6_receipt, index, flag, {"status": "PASS", "error_code": None,
                                                  "bundle_sha256_hex": flag.split(" = ")[1].strip(),
                                                  "member_count": len(index["members"])}

    members, s6_receipt, index, flag, s7 = timer.run("S7", run_s7)
    result = ChainResult(identity=identity, tables=tables, events=events, seconds=timer.seconds, reused=reused,
                         receipt=receipt, sealed=sealed, universe_doc=universe_doc, s6_report=s6_report,
                         s6_issues=s6_issues, s6_receipt=s6_receipt, s7=s7, members=members, index=index, flag=flag,
                         counters={"pairs_smooth_band_escalated": smoothed, **s4_counters}, pack=pack, gates=gates)
    if run_root is not None:
        from engine.store import materialise
        result.run_dir = materialise(result, Path(run_root))
    return result
