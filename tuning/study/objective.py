"""The phase objective: knobs -> candidate policies -> engine chain -> metric pack -> J and vetoes.

One :class:`PhaseObjective` per study process holds the engine's :class:`ChainCache` (the rerun
matrix: a P1.2 candidate reuses S0/S1, a P2 candidate S0-S2, ...) and the anchor, i.e. the base
(authority) policy set run once on the same seed. Common random numbers are the engine's: the RNG
master ignores the policies, so two candidates differ only by their knobs.

A vetoed evaluation still carries its J when the chain ran; its ``constraints`` (one per veto
reason, > 0 when breached) go to Optuna through ``trial.set_constraint`` so it is infeasible and
never "best". When the chain cannot run at all (a candidate the engine rejects), J is
:data:`NO_SCORE` and the veto is ``SCHEMA_INVALID`` / ``ENGINE_ERROR``.
"""

from __future__ import annotations

import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from engine import (ChainCache, EngineError, PolicySet, evaluate_gates, fidelity_holds, fidelity_verdict, metric_pack,
                    realism_floors, run_chain, run_verdict, seed_outlets)
from tuning.study.cache_budget import chain_cache
from tuning.study import score_memo
from tuning.study.knobs import apply_knobs
from tuning.study.seed_robust import aggregate
from tuning.study.spec import StudySpec, check_metrics, metric_or_none, metric_value
from tuning.study.trial_row import Outcome

NO_SCORE = -1000.0


_FLOORS_LOCK = threading.Lock()
SEED_THREADS_MIN_PAIRS = 100_000   # from this many pairs on, a seed's chain is long enough to share the cores


def seed_threads(pairs: int) -> int:
    """Seeds scored at once in one process (validation, held-out seeds): on a world of ``pairs`` pairs or more,
    two chains keep 2 cores busier than one (one's single-threaded parts overlap the other's; measured on the
    381k world: 20 held-out seeds in 16.3 s against 19.0-19.9 s one at a time); a small world's chain is too
    short to gain from threads."""
    return 2 if (os.cpu_count() or 1) >= 2 and pairs >= SEED_THREADS_MIN_PAIRS else 1


_EVENLY: dict[str, frozenset] = {}   # world fingerprint -> its evenly populated countries


def evenly_populated_countries(world) -> frozenset | None:
    """What the authoring realism floors read of the world's evidence (a country whose people it spreads evenly is
    not judged non-uniform: :func:`engine.policies.authoring.realism_floors`): those countries, computed once per
    world, when it has evidence (the default world's when ``world`` is None), else None."""
    from engine import default_world
    from engine import evenly_populated

    world = world if world is not None else default_world()
    if not world.fidelity_applicable:
        return None
    if world.fingerprint not in _EVENLY:
        _EVENLY[world.fingerprint] = evenly_populated(world.population)
    return _EVENLY[world.fingerprint]


def seeds_first_then_threads(fn, items: Sequence, pairs_of) -> list:
    """``[fn(item) for item in items]``, in order: the first alone (it computes what every seed shares and
    ``pairs_of(its result)`` tells the world's size), the rest :func:`seed_threads` at a time."""
    if not items:
        return []
    first = fn(items[0])
    with ThreadPoolExecutor(max_workers=seed_threads(pairs_of(first))) as pool:
        return [first, *pool.map(fn, items[1:])]


STRUCTURAL_REASONS = {"s6_pass": "S6_OR_S7_FAIL", "s7_pass": "S6_OR_S7_FAIL", "conservation": "CONSERVATION_FAIL",
                      "realism_floors": "REALISM_FLOOR_FAIL", "schema": "SCHEMA_INVALID",
                      "fidelity": "FIDELITY_DISTORTED", "gate_regression": "GATE_REGRESSION"}


@dataclass
class Evaluation(Outcome):
    """Everything one candidate produced (what tracking logs and promotion replays)."""

    knobs: dict
    policies: PolicySet | None
    value: float = NO_SCORE
    deltas: dict = field(default_factory=dict)
    vetoes: list = field(default_factory=list)          # sorted unique reasons
    veto_detail: list = field(default_factory=list)     # human-readable lines
    constraints: dict = field(default_factory=dict)     # reason -> breach (> 0 = infeasible)
    targets: dict = field(default_factory=dict)         # label -> bool
    identity: dict = field(default_factory=dict)
    pack: dict | None = None
    gates: dict | None = None
    verdict: str = "NOT_SCORED"
    s6_status: str = "MISSING"
    s7_status: str = "MISSING"
    floors: dict | None = None
    seconds: dict = field(default_factory=dict)         # engine seconds per state
    reused: list = field(default_factory=list)
    chain_seconds: float = 0.0                          # wall time inside run_chain
    build_seconds: float = 0.0                          # knobs -> candidate bytes -> engine's policy parse
    tables: dict | None = None
    error: str | None = None
    fidelity: str = "NOT_SCORED"                        # FAITHFUL | DISTORTED | NOT_APPLICABLE | UNMEASURED
    second_value: float | None = None                   # the second objective (multi-objective studies)
    seeds: list = field(default_factory=list)           # the seeds scored (seed-robust trials)
    seed_values: list = field(default_factory=list)     # J per seed, in seed order
    per_seed: list = field(default_factory=list)        # the per-seed Evaluations
    outlets: object = None                              # SeedOutlets (engine.metrics.pooled): with keep_outlets
    fraction: float = 1.0                               # the merchant fraction scored (tuning.study.fidelity)
    search: list | None = None                          # the search stages' records (multi-fidelity trials)


def deterministic_view(pack: Mapping, identity: Mapping) -> dict:
    """The replayable part of an evaluation (no timings): what a witness must reproduce exactly."""
    keep = ("run_id", "parameter_hash", "manifest_fingerprint", "world_digest", "seed", "policy_digests")
    return {"identity": {k: identity.get(k) for k in keep}, "pack": pack}


def phase_j(spec: StudySpec, pack: Mapping, anchor_pack: Mapping) -> tuple[float, dict[str, float]]:
    """The phase's J on one seed: the weighted sum of the study's term deltas against the anchor's pack."""
    deltas = {}
    for term in spec.terms:
        cand, base = metric_value(pack, term["metric"]), metric_value(anchor_pack, term["metric"])
        if "within" in term:
            deltas[term["name"]] = toward_corridor(cand, base, *term["within"])
        else:
            deltas[term["name"]] = (base - cand) if term["direction"] == "down" else (cand - base)
    return float(math.fsum(t["weight"] * deltas[t["name"]] for t in spec.terms)), deltas


def toward_corridor(cand: float, base: float, lo: float, hi: float) -> float:
    """How much nearer the corridor [lo, hi] ``cand`` is than ``base``: ``cand − base`` while both are below it,
    ``base − cand`` while both are above it, else the difference of their distances to it (0 inside it)."""
    if cand <= lo and base <= lo:
        return cand - base
    if cand >= hi and base >= hi:
        return base - cand

    def far(x: float) -> float:
        return lo - x if x < lo else (x - hi if x > hi else 0.0)

    return far(base) - far(cand)


class SeedRobustObjective:
    """The study's objective over its K seeds (``tuning.study.seed_robust``): every candidate is scored on
    every seed with common random numbers; ``on_seed(index, seed, running_mean)`` may return True to
    stop early (a pruner), and then the trial is scored on the seeds seen so far."""

    def __init__(self, spec: StudySpec, seeds, base: PolicySet, *, world=None,
                 cache: ChainCache | None = None, keep_tables: bool = False, fraction: float = 1.0) -> None:
        self.spec, self.base = spec, base
        self.seeds = [int(s) for s in seeds]
        self.cache = cache if cache is not None else chain_cache(64 * max(1, len(self.seeds)))
        self.fraction = float(fraction)
        self.per_seed = [PhaseObjective(spec, s, base, world=world, cache=self.cache, keep_tables=keep_tables,
                                        fraction=fraction) for s in self.seeds]
        floors: dict = {}  # S2 (what the realism floors read) does not depend on the seed: once per candidate
        for obj in self.per_seed:
            obj.floors_memo = floors
        self.second = spec.second["metric"] if spec.second else None
        self.pruned = False
        self.runner = None   # tuning.sweep.seed_tasks.ClusterSeeds: the seeds as Dask tasks (--cluster)

    @property
    def seed(self) -> int:
        return self.seeds[0]

    @property
    def anchor(self) -> Evaluation:
        return aggregate([o.anchor for o in self.per_seed], self.seeds, self.second)

    def evaluate(self, knob_values: Mapping[str, object], run_root=None, on_seed=None) -> Evaluation:
        if self.runner is not None and run_root is None:   # every seed at once on the cluster, read in order
            computed = iter(self.runner.evaluate(self, knob_values))
            return self._each(lambda o: next(computed), on_seed)
        built = self.per_seed[0].build(knob_values)  # the candidate is built once, scored on every seed
        return self._each(lambda o: o.evaluate(knob_values, run_root, built=built), on_seed)

    def evaluate_many(self, knob_values: Sequence[Mapping[str, object]], on_seed=None) -> list[Evaluation]:
        """Several candidates on every seed, seed by seed: what a seed's chain draws without reading a policy
        (the world seal, S1, S3's plan) is computed once for all of them, however small the cache is against the
        world. On a large world two seeds run at once (:func:`seed_threads`). Each evaluation equals
        :meth:`evaluate` of the same values (a seed's score never reads another's). ``on_seed()`` is called as each
        seed is done (a progress bar)."""
        built = [self.per_seed[0].build(v) for v in knob_values]

        def one_seed(obj: "PhaseObjective") -> list[Evaluation]:
            row = [obj.evaluate(values, built=b) for values, b in zip(knob_values, built)]
            if on_seed is not None:
                on_seed()
            return row

        anchor = self.per_seed[0].anchor.pack   # the world's size: its anchor's pairs
        by_seed = seeds_first_then_threads(one_seed, self.per_seed,
                                           lambda _: int(anchor["s1"]["pairs_total"]) if anchor else 0)
        return [aggregate([seed_row[i] for seed_row in by_seed], self.seeds, self.second)
                for i in range(len(built))]

    def replay(self, policies: PolicySet, run_root=None) -> Evaluation:
        return self._each(lambda o: o.replay(policies, run_root), None)

    def each(self, fn) -> Evaluation:
        """``fn(per_seed objective)`` on every seed in order, aggregated as a trial is (a witness's own replay)."""
        return self._each(fn, None)

    def _each(self, fn, on_seed) -> Evaluation:
        done, self.pruned = [], False
        for i, obj in enumerate(self.per_seed):
            done.append(fn(obj))
            if on_seed is not None and i + 1 < len(self.per_seed):
                if on_seed(i, obj.seed, math.fsum(e.value for e in done) / len(done)):
                    self.pruned = True
                    break
        return aggregate(done, self.seeds[: len(done)], self.second)


class PhaseObjective:
    partitions: int | None = None   # S3/S4 merchant ranges (None: the engine's default)
    keep_outlets = False            # each chain's realised outlets per clock (campaign validation pools them: 3A-F09)
    mapper = None                   # how the ranges run (None: the engine's default); a --workers process sets it

    def __init__(self, spec: StudySpec, seed: int, base: PolicySet, *, world=None,
                 cache: ChainCache | None = None, keep_tables: bool = False, fraction: float = 1.0) -> None:
        self.spec, self.seed, self.base, self.world = spec, int(seed), base, world
        self.cache = cache if cache is not None else chain_cache()
        self.fraction = float(fraction)   # < 1: the keyed merchant subsample (search stage); 1: the whole world
        self.keep_tables = keep_tables
        self._anchor: Evaluation | None = None
        self.floors_memo: dict | None = None  # parameter_hash -> realism floors, shared by a seed-robust objective

    # ------------------------------------------------------------------ anchor
    @property
    def anchor(self) -> Evaluation:
        """The base (authority) policy set on the same seed, computed once and cached; every metric the study
        names must be in its pack (tuning.study.spec.check_metrics)."""
        if self._anchor is None:
            run = self._run({}, self.base)
            if run.pack is not None:
                check_metrics(self.spec, run.pack)
            self._anchor = self._score(run, anchor_pack=None)
            if self._anchor.pack is None:
                raise EngineError(self._anchor.error.split(":")[0] if self._anchor.error else "E3A_TUN_040",
                                  f"the anchor (base policies) does not run: {self._anchor.error}")
        return self._anchor

    # ------------------------------------------------------------------ evaluation
    def build(self, knob_values: Mapping[str, object]) -> tuple[PolicySet | None, float, EngineError | None]:
        """(candidate, seconds, None), or (None, seconds, the engine's refusal) for a candidate it rejects."""
        t0 = time.perf_counter()
        try:
            return apply_knobs(self.base, knob_values), time.perf_counter() - t0, None
        except EngineError as exc:
            if exc.code.startswith("E3A_TUN_"):
                raise  # a knob outside its domain is a harness bug or a bad study, not a candidate
            return None, time.perf_counter() - t0, exc

    def evaluate(self, knob_values: Mapping[str, object], run_root=None, built=None) -> Evaluation:
        """Score the candidate of these knob values (``built``: what :meth:`build` returned for them)."""
        anchor_pack = self.anchor.pack
        candidate, build, refused = built if built is not None else self.build(knob_values)
        if refused is not None:
            ev = Evaluation(dict(knob_values), None, error=refused.one_line())
            return self._veto_only(ev, "SCHEMA_INVALID", refused.one_line())
        ev = self._score(self._run(knob_values, candidate, run_root), anchor_pack)
        ev.build_seconds = build
        return ev

    def replay(self, policies: PolicySet, run_root=None) -> Evaluation:
        """Run a given policy set (a promotion witness) through the same scoring."""
        return self._score(self._run({}, policies, run_root, memo=False), self.anchor.pack)

    def _run(self, knob_values: Mapping, policies: PolicySet, run_root=None, memo: bool = True) -> Evaluation:
        """The chain's score; inside :func:`tuning.study.score_memo.shared_scores` one already computed for the
        same (world, seed, fraction, policy bytes) is reused (never for a published run, kept tables or a
        replay: ``memo`` False)."""
        shared = score_memo.active() if memo and run_root is None and not self.keep_tables else None
        key = score_memo.score_key(self.world, self.seed, self.fraction, policies) if shared is not None else None
        t0 = time.perf_counter()
        row = shared.get(key, outlets=self._wants_outlets()) if shared is not None else None
        if row is not None:
            ev = Evaluation(dict(knob_values), policies, **row)
            ev.chain_seconds, ev.reused = time.perf_counter() - t0, ["scores"]
            return ev
        ev = self._chain(knob_values, policies, run_root)
        if shared is not None:
            shared.put(key, ev)
        return ev

    def _chain(self, knob_values: Mapping, policies: PolicySet, run_root=None) -> Evaluation:
        ev = Evaluation(dict(knob_values), policies)
        t0 = time.perf_counter()
        try:
            res = run_chain(policies, self.seed, self.world, cache=self.cache, run_root=run_root,
                            fraction=self.fraction, partitions=self.partitions, mapper=self.mapper)
        except EngineError as exc:
            ev.chain_seconds = time.perf_counter() - t0
            ev.error = exc.one_line()
            return ev
        ev.chain_seconds = time.perf_counter() - t0
        ev.fraction = self.fraction
        ev.identity = dict(res.identity)
        ev.seconds = {k: float(v) for k, v in res.seconds.items()}
        ev.reused = sorted(res.reused)
        # scoring reads the cores and the in-memory S6 status: no published table, no S5-S7 bytes
        # (``run_root`` publishes them; ``keep_tables`` asks for the published tables)
        ev.pack = res.pack if res.pack is not None else metric_pack(res.cores)
        ev.gates = res.gates if res.gates is not None else evaluate_gates(ev.pack)
        ev.verdict = run_verdict(ev.gates)
        ev.fidelity = fidelity_verdict(ev.gates)
        ev.s6_status = str(res.s6_status)
        ev.s7_status = str(res.s7_status)
        ev.floors = self._realism_floors(policies, res.cores["s2"])
        if self.keep_tables:
            ev.tables = res.tables
        if self._wants_outlets():
            ev.outlets = seed_outlets(res.cores["s4"], self.world.evidence)
        return ev

    def _wants_outlets(self) -> bool:
        """keep_outlets on a world whose people can be read (engine.metrics.pooled)."""
        evidence = getattr(self.world, "evidence", None)
        return bool(self.keep_outlets and evidence is not None and evidence.applicable)

    def _realism_floors(self, policies: PolicySet, s2) -> dict:
        memo = self.floors_memo
        if memo is None:
            return realism_floors(s2, evenly_populated_countries(self.world))
        floors = memo.get(policies.parameter_hash)
        if floors is None:
            floors = realism_floors(s2, evenly_populated_countries(self.world))
            with _FLOORS_LOCK:   # seeds scored on threads share the memo
                if len(memo) >= 8:
                    memo.pop(next(iter(memo)))
                memo[policies.parameter_hash] = floors
        return floors

    def _veto_only(self, ev: Evaluation, reason: str, detail: str) -> Evaluation:
        ev.fraction = self.fraction
        ev.vetoes, ev.veto_detail, ev.constraints = [reason], [detail], {reason: 1.0}
        return ev

    def _score(self, ev: Evaluation, anchor_pack: dict | None) -> Evaluation:
        if ev.pack is None:
            reason = "SCHEMA_INVALID" if (ev.error or "").startswith("E3A_POL_") else "ENGINE_ERROR"
            return self._veto_only(ev, reason, ev.error or "the chain produced no tables")
        spec, pack = self.spec, ev.pack
        ref = anchor_pack if anchor_pack is not None else pack
        ev.value, deltas = phase_j(spec, pack, ref)
        ev.deltas.update(deltas)

        breaches: dict[str, float] = {}
        detail: list[str] = []

        def breach(reason: str, amount: float, line: str) -> None:
            breaches[reason] = breaches.get(reason, 0.0) + amount
            detail.append(line)

        checks = set(spec.structural)
        if "s6_pass" in checks and ev.s6_status != "PASS":
            breach("S6_OR_S7_FAIL", 1.0, f"S6 overall_status {ev.s6_status}")
        if "s7_pass" in checks and ev.s7_status != "PASS":
            breach("S6_OR_S7_FAIL", 1.0, f"S7 status {ev.s7_status}")
        if "conservation" in checks:
            for fam in ("s4", "zone_alloc"):
                if pack[fam].get("count_conservation_all_pairs") is not True:
                    breach("CONSERVATION_FAIL", 1.0, f"{fam} count conservation false")
        if "realism_floors" in checks and not ev.floors["passed"]:
            breach("REALISM_FLOOR_FAIL", 1.0, "; ".join(ev.floors["reasons"]))
        if "gate_regression" in checks and anchor_pack is not None:
            before = evaluate_gates(anchor_pack)
            lost = sorted(g for fam in ("hard", "stretch") for g, v in before[fam].items()
                          if v["status"] == "PASS" and ev.gates[fam][g]["status"] != "PASS")
            if lost:
                breach("GATE_REGRESSION", float(len(lost)), f"plan gate(s) passing on the anchor now fail: {', '.join(lost)}")
        if "fidelity" in checks and not fidelity_holds(ev.fidelity):
            failed = sorted(g for g, v in (ev.gates or {}).get("fidelity", {}).items() if v["status"] != "PASS")
            breach("FIDELITY_DISTORTED", 1.0, f"fidelity {ev.fidelity}: {', '.join(failed) or 'not measured'}")
        for cond in spec.guardrails:
            amount = cond.breach(pack, ref)
            if amount > 0:
                breach(cond.reason, amount, f"{cond.label()} (value {metric_value(pack, cond.metric):.6g})")
        ev.constraints = {reason: breaches.get(reason, 0.0) for reason in self.constraint_keys()}
        ev.constraints.update(breaches)
        ev.vetoes = sorted(breaches)
        ev.veto_detail = detail
        ev.targets = {cond.label(): cond.holds(pack, ref) for cond in spec.targets}
        if spec.second:
            ev.second_value = metric_or_none(pack, spec.second["metric"])
        ev.seeds, ev.seed_values = [self.seed], [ev.value]
        return ev

    def constraint_keys(self) -> list[str]:
        keys = {STRUCTURAL_REASONS[s] for s in self.spec.structural}
        keys |= {c.reason for c in self.spec.guardrails}
        return sorted(keys)
