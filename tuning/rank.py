"""``python -m tuning.rank --phase P1.2 [--top 10] [--study NAME] [--pareto] [--json] [--open [--ui URL]]``

The ranking table of a phase's trials, read from MLflow (the numbers the UI shows): feasible
(``veto`` = PASS) first, then by J descending, then by trial number, one table per objective (a phase's experiment
may hold its frontier's trials too, scored on another objective: the phase's own study's first, ``--top`` each;
``--study NAME`` ranks one study); printed as an aligned table (or
JSON: each trial's row, :meth:`tuning.study.trial_row.TrialRow.to_json`, with ``mlflow_run_id`` (the trial's
MLflow run) and ``engine_run_id`` (the engine's run) named apart). ``--pareto`` lists only the feasible Pareto front of a multi-objective study (trial runs tagged
``pareto = true`` by the sweep), with the second objective beside J. ``--open`` also prints the MLflow
UI address of the same ranking (the experiment's saved ``rank`` view: trials flat, feasible first by J, with
the J, verdict, fidelity and veto columns) on the UI of this store: ``--ui URL``, else the tracking server
of ``MLFLOW_TRACKING_URI``, else http://127.0.0.1:5000; a note on stderr says when no UI of this store
answers there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

from engine import EngineError
from tuning.common.errors import E_RUN_MISSING, E_USAGE, TuningParser, at_least_one, run_cli
from tuning.study.trial_row import MLFLOW_METRICS, TrialRow
from tuning.trail.store_init import default_uri

# MLflow, Optuna's ranking and the study files load where they are used: a usage error answers at once


def ranked_runs(phase: str, study: str | None = None, key_metrics: Sequence[str] | None = None,
                experiment: str | None = None) -> list[TrialRow]:
    """``experiment``: the sweep experiment to read (default ``3A-<phase>``, the default world's own sweeps);
    ``key_metrics``: default the studies' (:data:`tuning.study.spec.DEFAULT_KEY_METRICS`)."""
    return ranked_with_objectives(phase, study, key_metrics, experiment)[0]


def ranked_with_objectives(phase: str, study: str | None = None, key_metrics: Sequence[str] | None = None,
                           experiment: str | None = None) -> tuple[list[TrialRow], dict[str, str]]:
    """The ranked rows and, from the same runs, study -> the objective its trials record (tag ``objective``)."""
    from tuning.study.ranking import rank_rows
    from tuning.trail.tracking import RUN_KIND_TRIAL, reader, search_all

    if key_metrics is None:
        from tuning.study.spec import DEFAULT_KEY_METRICS as key_metrics
    mlc = reader()   # ranking only reads: a store on a read-only mount is ranked, a missing one is not created
    name = experiment or f"3A-{phase}"
    if mlc is None:
        raise EngineError(E_RUN_MISSING, f"no MLflow experiment {name}: no MLflow store at {default_uri()} yet")
    exp = mlc.get_experiment_by_name(name)
    if exp is None:
        raise EngineError(E_RUN_MISSING, f"no MLflow experiment {name} at {mlc.tracking_uri}{_other_sweeps(mlc, name)}")
    flt = f"tags.run_kind = '{RUN_KIND_TRIAL}'" + (f" and tags.study = '{study}'" if study else "")
    runs = search_all(mlc, [exp.experiment_id], flt, order_by=["metrics.J DESC"])
    objectives: dict[str, str] = {}
    for run in runs:
        if run.data.tags.get("objective"):
            objectives.setdefault(run.data.tags.get("study", ""), run.data.tags["objective"])
    return rank_rows([TrialRow.from_mlflow_run(run, key_metrics) for run in runs]), objectives


def by_objective(rows: Sequence[TrialRow], objectives: dict[str, str], first: str | None = None
                 ) -> list[tuple[str, list[TrialRow]]]:
    """Ranked rows split by the objective their J scores (``objectives``: study -> its trials' ``objective`` tag;
    a study whose runs carry none is its own group): a phase's experiment may hold its frontier's trials, scored on
    another objective, and J of two objectives are never ranked together. The group of ``first`` (the phase's own
    study) leads, the others follow by name; each keeps the ranking order."""
    groups: dict[str, list[TrialRow]] = {}
    for r in rows:
        groups.setdefault(objectives.get(r.study or "") or f"study {r.study}", []).append(r)
    lead = objectives.get(first or "") or f"study {first}"
    return sorted(groups.items(), key=lambda kv: (kv[0] != lead, kv[0]))


def _other_sweeps(mlc, name: str) -> str:
    """A hint when the phase's trials are in the other kind of experiment: the campaign's own sweeps
    (``campaign-3A-<phase>...``, ``--campaign``) or a user's sweeps (``3A-<phase>...``)."""
    from tuning.campaign.steps import NAMESPACE as CAMPAIGN_PREFIX

    campaign = name.startswith(CAMPAIGN_PREFIX)
    other = name[len(CAMPAIGN_PREFIX):] if campaign else CAMPAIGN_PREFIX + name
    if mlc.get_experiment_by_name(other) is not None:
        return f"; {other} holds " + ("your own sweeps: drop --campaign" if campaign else "the campaign's: add --campaign")
    worlds_ = sorted(e.name for e in mlc.search_experiments(filter_string=f"name LIKE '{name}-w%'"))
    if worlds_:   # another world's sweeps of this phase (3A-<phase>-w<id>): ranked with that world's --world
        return f"; {', '.join(worlds_[:3])} hold{'s' if len(worlds_) == 1 else ''} another world's: add --world DIR"
    if not campaign:   # another world's campaign sweeps (campaign-3A-<phase>-w<id>): both flags (helper 41)
        theirs = sorted(e.name for e in mlc.search_experiments(filter_string=f"name LIKE '{other}-w%'"))
        if theirs:
            return (f"; {', '.join(theirs[:3])} hold{'s' if len(theirs) == 1 else ''} another world's campaign "
                    f"sweeps: add --world DIR --campaign")
    return ""


def aligned(table: list[list[str]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    widths = [max(len(r[i]) for r in table if i < len(r)) for i in range(max(map(len, table)))]

    def cell(text: str, i: int) -> str:
        numeric = text[:1] in "+-0123456789" and text.replace(".", "", 1).lstrip("+-").isdigit()
        return text.rjust(widths[i]) if numeric else text.ljust(widths[i])

    return "\n".join("  ".join(cell(c, i) for i, c in enumerate(r)).rstrip() for r in table)


def _short(metric: str) -> str:
    """A column heading: ``s2.top1_share_median_multi_tz`` -> ``s2.top1_median_mtz``; a name without a family
    (``second_objective``, the --pareto column) as it is."""
    family, _, name = metric.partition(".")
    return f"{family}.{name.replace('share_', '').replace('_multi_tz', '_mtz')}" if name else family


def format_rows(rows: Sequence[TrialRow], key_metrics: Sequence[str]) -> str:
    """The ranking table, the columns of the UI's ``rank`` view: J and the key metrics are means over the trial's
    seeds, ``worst.J`` its worst seed's J (``--json`` also gives each key metric's worst seed's value, ``worst``).
    A key metric not in a row's ``metrics`` is read as a field of the row (``second``, the --pareto column).
    ``targets``: whether the study's targets (reported, never vetoed) hold on every seed: ``met`` or ``MISSED``."""
    short = [_short(MLFLOW_METRICS.get(m, m)) for m in key_metrics]   # a row field under its MLflow name
    head = ["rank", "study", "trial", "mlflow_run_id", "J", "worst.J", "veto", "verdict", "targets"] + short
    out = [head]
    for i, r in enumerate(rows, 1):
        veto = r.veto if r.feasible else f"FAIL({','.join(r.vetoes) or 'none'})"
        cells = [str(i), str(r.study), str(r.trial), str(r.mlflow_run_id), _signed(r.J), _signed(r.worst_J), veto,
                 str(r.verdict), "met" if r.target_pass else "MISSED"]
        values = [r.metrics.get(m, getattr(r, m, None)) for m in key_metrics]
        cells += ["-" if v is None else f"{v:.6f}" for v in values]
        out.append(cells + ([f"[{r.authority} authority]"] if r.authority else []))
    return aligned(out)


def first_misses_targets(rows: Sequence[TrialRow], listed: int | None = None) -> str | None:
    """A note when the top row is feasible but misses the study's targets: the trial a campaign selects (the best
    feasible one that meets them) is then another row of the ranking ``rows``, perhaps below the ``listed`` first
    rows the table shows, or none."""
    if not rows or not rows[0].feasible or rows[0].target_pass:
        return None
    meets = next(((i, r) for i, r in enumerate(rows, 1) if r.feasible and r.target_pass), None)
    below = f", below the {listed} listed (--top)" if meets and listed is not None and meets[0] > listed else ""
    then = (f"the best feasible trial that meets them is #{meets[0]} (trial {meets[1].trial}){below}" if meets else
            "no feasible trial meets them")
    return f"note: #1 (trial {rows[0].trial}) misses the study's targets (reported, not vetoed); {then}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.6f}"


def build_parser() -> TuningParser:
    ap = TuningParser(prog="python -m tuning.rank", description=__doc__.splitlines()[0])
    ap.add_argument("--phase", required=True)
    ap.add_argument("--top", type=at_least_one, default=10)
    ap.add_argument("--study", help="only this Optuna study's trials")
    ap.add_argument("--studies-dir", default="studies")
    ap.add_argument("--pareto", action="store_true", help="only the feasible Pareto front (multi-objective studies)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--open", action="store_true", help="also print the MLflow UI address of this ranking")
    ap.add_argument("--ui", help="the MLflow UI base URL (default: the tracking server, else http://127.0.0.1:5000)")
    ap.add_argument("--world", metavar="DIR", help="the sweeps of this world (its own experiment, 3A-<phase>-w<id>)")
    ap.add_argument("--campaign", action="store_true", help="the campaign's own sweeps (campaign-3A-<phase>...)")
    ap.add_argument("--policies", metavar="DIR", help="with --campaign: only the campaign into this authority folder "
                                                      "(two folders of one world share the experiment); its world "
                                                      "unless --world")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tuning.campaign.steps import NAMESPACE as CAMPAIGN_PREFIX   # the campaign's sweeps' experiments
    from tuning.common import worlds
    from tuning.study.spec import DEFAULT_KEY_METRICS, load_study

    # --policies without --world: the authority folder's own world, as every other command infers it
    world = worlds.authority_world(args.policies, args) if args.policies and not args.world else worlds.load(args.world)
    prefix = CAMPAIGN_PREFIX if args.campaign else ""
    phase = args.phase
    try:   # --phase names a phase of --studies-dir, or a study file (as sweep --phase takes one)
        spec = load_study(args.phase, args.studies_dir)
        key_metrics, own, phase = list(spec.key_metrics), worlds.suffixed(prefix + spec.study, world), spec.phase
    except EngineError as exc:   # ranked on the default columns, and said so once the table is printed
        if Path(args.phase).suffix in (".yaml", ".yml"):
            raise   # a study file given that does not load: no phase to rank
        key_metrics, own = list(DEFAULT_KEY_METRICS), None
        default_columns = f"note: {exc.cause.split(' (')[0]}: ranked on the default key metrics (--studies-dir DIR: " \
                          f"the project's studies)"
    else:
        default_columns = None
    experiment = worlds.suffixed(f"{prefix}3A-{phase}", world)
    study = worlds.suffixed(args.study, world) if args.study else None   # the name sweep --study was given works
    rows, objectives = ranked_with_objectives(phase, study, key_metrics, experiment)
    if args.policies:
        rows = campaign_of(rows, args, world)
    if study and not rows:
        raise EngineError(E_RUN_MISSING, f"no trial of study {study} in the MLflow experiment {experiment}")
    if args.pareto:
        rows = [r for r in rows if r.pareto]
        key_metrics = ["second"] + key_metrics
    everything = by_objective(rows, objectives, own)
    groups = [(name, ranked[: args.top], f"{len(ranked)} trials of {', '.join(sorted({r.study or '' for r in ranked}))}")
              for name, ranked in everything]
    if args.json:
        print(json.dumps([r.to_json() for _, ranked, _ in groups for r in ranked], indent=2, sort_keys=True))
    elif len(groups) > 1:   # one table per objective, each ranked on its own
        print("\n\n".join(f"{name if name.startswith('study ') else 'objective ' + name} ({what}; ranked on its "
                           f"own):\n{format_rows(ranked, key_metrics)}" for name, ranked, what in groups))
    else:
        print(format_rows(groups[0][1] if groups else [], key_metrics))
    if args.open:
        print(f"MLflow UI: {ui_link(experiment, key_metrics, args.ui)}", flush=True)
    if not rows and not args.json:   # a header alone would read as a ranking of nothing, without saying why
        whose = f" from the campaign into {args.policies}" if args.policies else ""
        print(f"note: no trial{whose} in the MLflow experiment {experiment}: no sweep of phase {phase} has logged one "
              f"(a phase its precheck closes, e.g. a campaign's P3_NOOP_LOCK, runs none)", file=sys.stderr)
    for name, ranked in everything if not args.json else ():
        note = first_misses_targets(ranked, args.top)
        if note:
            print(note + (f" ({name})" if len(groups) > 1 else ""), file=sys.stderr)
    if default_columns:
        print(default_columns, file=sys.stderr)
    return 0


def campaign_of(rows: list, args, world) -> list:
    """The rows of the campaign into ``--policies`` (its studies are named ``campaign-<folder scope>3A-...``)."""
    from tuning.campaign.steps import NAMESPACE as CAMPAIGN_PREFIX, folder_scope

    if not args.campaign:
        raise EngineError(E_USAGE, "--policies ranks one authority folder's campaign: use it with --campaign (a sweep "
                                   "of your own on that folder's world ranks with --world DIR, without --policies)")
    from tuning.authority.txn import require_authority_folder
    from tuning.common import worlds

    require_authority_folder(args.policies)   # a folder that is no authority has no campaign of its own
    scope = folder_scope(Path(args.policies), world)
    if scope is None:
        raise EngineError(E_USAGE, f"{args.policies}: not an authority folder of world {world.name} (no world.yaml)")
    worlds.require(args.policies, world, "ranking its campaign")
    return [r for r in rows if (r.study or "").startswith(f"{CAMPAIGN_PREFIX}{scope}3A-")]


def ui_link(experiment: str, key_metrics: Sequence[str], ui_base: str | None) -> str:
    """The UI address of the experiment's saved ranking view (saved now if the experiment lacks it); a note on
    stderr when no UI of this store answers at that address."""
    from tuning.trail.tracking import client
    from tuning.trail.ui_view import default_ui_base, ensure_rank_view, rank_url, ui_mismatch

    mlc = client()
    exp = mlc.get_experiment_by_name(experiment)
    ensure_rank_view(mlc, exp.experiment_id, key_metrics)
    ui_base = ui_base or default_ui_base()
    note = ui_mismatch(ui_base, exp.name, exp.experiment_id, mlc.tracking_uri)
    if note:
        print(f"note: {note}", file=sys.stderr)
    return rank_url(ui_base, exp.experiment_id)


if __name__ == "__main__":
    run_cli(main)
