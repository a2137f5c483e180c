"""What one ``python -m tuning.sweep`` invocation was asked to do, as one frozen value.

The CLI parses argv once into a :class:`SweepConfig`; everything after that (the coordinator, the
worker processes of ``--workers K``, the campaign's in-process sweeps) takes the config, never an
argparse namespace. The config is validated when it is built, so a bad value is the same coded
``E3A_TUN_050_USAGE`` line whether it came from argv or from code.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass, fields
from typing import Sequence

from engine import EngineError
from tuning.common.errors import E_USAGE, TuningParser, decimal
from tuning.common.limits import MAX_TRIALS, OPTUNA_DIR, STUDY_NAME, UINT64_MAX
from tuning.common.worlds import add_world_args

DEFAULT_STALE_AFTER_S = 6 * 3600.0


@dataclass(frozen=True)
class SweepConfig:
    phase: str                              # studies/<PHASE>.yaml or a path to a study file
    trials: int | None = None               # COMPLETE trials in total (None: the study's budget)
    seed: int | None = None                 # one engine seed only (None: every seed of the study)
    workers: int = 1                        # processes on the shared storage
    storage: str | None = None              # Optuna storage URL or journal file (None: .optuna/<study>.journal)
    study: str | None = None                # Optuna study name (None: the study file's)
    studies_dir: str = "studies"
    policies: str | None = None             # base policy directory (None: the study file's base_policies)
    top: int = 5                            # candidates in the summary
    reports: int = 1                        # best feasible trials that get a report HTML
    force: bool = False                     # run even when the phase precheck says no-op
    stale_after: float = DEFAULT_STALE_AFTER_S  # a RUNNING trial of another host older than this is dead
    max_failures: int = 5                   # failed trials tolerated per process (crashed, FAIL, no chain)
    json: bool = False                      # print the summary as JSON
    materialise: bool = False               # write every trial's run folder under runs_root
    runs_root: str = "runs"
    progress: bool = True                   # the progress bar on stderr
    timeout: float | None = None            # seconds after which no new trial starts
    world: str | None = None                # a world directory (None: the study file's ``world:``, else the default)
    outlets: str | None = None              # shorthand: an outlet catalogue over the world
    reference: str | None = None            # shorthand: a zone universe over the world
    namespace: str = ""                     # prefix of the study and experiment names (the campaign's own sweeps)
    study_scope: str = ""                   # then of the study's alone (a campaign into a folder of its own)
    cluster: str | None = None              # a Dask cluster (local:K | tcp://host:port): each seed's chain a task
    precheck_seeds: tuple = ()              # more seeds a phase precheck's triggers are read on (the campaign's
                                            # validation seeds: a collapse off the tuning seeds opens the phase)

    def __post_init__(self) -> None:
        check_sweep_args(self)
        if self.timeout is not None and not self.timeout > 0:
            raise EngineError(E_USAGE, "--timeout must be > 0 seconds")


DESCRIPTION = "Run one phase's Optuna study over the engine, every trial recorded in MLflow."


def check_sweep_args(args) -> None:
    """Range checks of a sweep's configuration (:class:`tuning.sweep.config.SweepConfig`), before anything
    is opened or written."""
    def bad(msg: str) -> None:
        raise EngineError(E_USAGE, msg)

    if not 1 <= args.workers <= 64:
        bad(f"--workers {args.workers} outside [1, 64]")
    if args.trials is not None and not 1 <= args.trials <= MAX_TRIALS:
        bad(f"--trials {args.trials} outside [1, {MAX_TRIALS}]")
    if args.seed is not None and not 0 <= args.seed <= UINT64_MAX:
        bad(f"--seed {args.seed} outside [0, 2**64-1]")
    if not (math.isfinite(args.stale_after) and args.stale_after >= 0):
        bad(f"--stale-after {args.stale_after} must be a finite number of seconds >= 0")
    if args.max_failures < 0:
        bad(f"--max-failures {args.max_failures} must be >= 0")
    if args.study is not None and not re.fullmatch(STUDY_NAME, args.study):
        bad(f"--study {args.study!r}: a study name is letters, digits, '.', '_' and '-' (it names a file "
            f"under {OPTUNA_DIR}/), not a path")
    if args.top < 0 or args.reports < 0:
        bad("--top and --reports must be >= 0")
    from tuning.sweep.seed_tasks import check_cluster

    check_cluster(getattr(args, "cluster", None), args.workers, E_USAGE)


def build_parser() -> TuningParser:
    ap = TuningParser(prog="python -m tuning.sweep", description=DESCRIPTION)
    ap.add_argument("--phase", required=True, help="study file studies/<PHASE>.yaml (or a path to one)")
    ap.add_argument("--trials", type=decimal, help="the budget in trials in total (default: the study's): COMPLETE "
                                                   "ones, and PRUNED ones too in a multi-fidelity study (docs/TUNING.md)")
    ap.add_argument("--seed", type=decimal, help="score one engine seed only (default: every seed of the study)")
    ap.add_argument("--workers", type=decimal, default=1, help="processes on the shared storage (every core: "
                                                          "--workers $(nproc))")
    ap.add_argument("--cluster", help="score each seed's chain as a Dask task: local:K (a LocalCluster of K "
                                      "processes) or tcp://scheduler:port")
    ap.add_argument("--storage", help="Optuna storage URL or journal file (default .optuna/<study>.journal)")
    ap.add_argument("--study", help="Optuna study name (default: the study file's)")
    ap.add_argument("--studies-dir", default="studies")
    ap.add_argument("--policies", help="base policy directory (default: the study file's base_policies)")
    ap.add_argument("--top", type=decimal, default=5, help="candidates printed at the end")
    ap.add_argument("--reports", type=decimal, default=1, help="best feasible trials that get a report HTML")
    ap.add_argument("--force", action="store_true", help="run even when the phase precheck says no-op")
    ap.add_argument("--stale-after", type=float, default=DEFAULT_STALE_AFTER_S,
                    help="seconds after which a RUNNING trial of another host counts as dead")
    ap.add_argument("--max-failures", type=decimal, default=5,
                    help="failed trials tolerated per process: crashed, told FAIL, or the chain could not run")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    ap.add_argument("--materialise", action="store_true", help="write every trial's run folder under --runs-root")
    ap.add_argument("--runs-root", default="runs")
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    ap.add_argument("--timeout", type=float, help="seconds after which no new trial starts (those running finish; "
                                                  "a later invocation resumes the budget)")
    add_world_args(ap)
    return ap


def parse_args(argv: Sequence[str] | None) -> SweepConfig:
    """argv -> a validated :class:`SweepConfig` (usage errors are coded lines)."""
    ns: argparse.Namespace = build_parser().parse_args(argv)
    return SweepConfig(**{f.name: getattr(ns, f.name) for f in fields(SweepConfig) if hasattr(ns, f.name)})
