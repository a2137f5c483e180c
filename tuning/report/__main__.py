"""One self-contained, offline HTML realism report of a run: gate table on top, then the figures.

The command line of :mod:`tuning.report.html`."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from tuning.common import worlds
from tuning.common.errors import TuningParser
from tuning.common.errors import run_cli


def build_parser() -> TuningParser:
    ap = TuningParser(prog="python -m tuning.report", description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", help="a materialised run directory (RUN_ROOT/<run_id>)")
    ap.add_argument("--out", default=None, help="output HTML file (default: reports/segment3a_report_<run_id>.html)")
    worlds.add_world_args(ap)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # the engine's tables and plotly: once the arguments are sound (a usage error answers at once)
    from tuning.report.files import atomic_write_text, load_run_dir, run_fidelity_evidence, score_tables
    from tuning.report.html import build_report_html

    res = load_run_dir(args.run_dir)
    evidence = run_fidelity_evidence(res, worlds.given(args))
    pack, gates, _ = score_tables(res.tables, evidence)
    rid = res.identity["run_id"]
    title = f"Segment 3A realism report — run {rid} (seed {res.identity['seed']})"
    out = Path(args.out) if args.out else Path("reports") / f"segment3a_report_{rid}.html"
    atomic_write_text(out, build_report_html(res.tables, pack, gates, title, evidence=evidence))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
