"""One self-contained, offline HTML realism report of a run: gate table on top, then the figures.

    python -m tuning.report RUN_DIR [--out FILE.html]

plotly.js is inlined exactly once (``include_plotlyjs=True`` on the first figure only, never a
CDN); every later figure reuses it. ``build_report_html(tables, pack, gates, title)`` is the
reusable part (the harness logs its output to MLflow). The HTML carries no timestamp, so the same
run always renders the same bytes. Default output: ``reports/segment3a_report_<run_id>.html``.
"""

from __future__ import annotations

import argparse
import html
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from engine.metrics import run_verdict
from tuning.errors import TuningParser, run_cli
from tuning.report_figures import FIGURES, ReportData
from tuning.report_files import atomic_write_text, gate_rows, load_run_dir, score_tables

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table.gates { border-collapse: collapse; font-size: 0.9em; }
table.gates th, table.gates td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
td.PASS { background: #e3f4e3; } td.FAIL { background: #f8e0e0; }
.verdict { font-size: 1.1em; } .figure { margin: 8px 0 24px 0; }
"""


def gate_table_html(gates: Mapping) -> str:
    rows = []
    for gate_id, value, threshold, status in gate_rows(gates):
        family = "B+" if gate_id.startswith("3A-S") else "B"
        rows.append(f"<tr><td>{html.escape(gate_id)}</td><td>{family}</td><td>{html.escape(value)}</td>"
                    f"<td>{html.escape(threshold)}</td><td class=\"{html.escape(str(status))}\">"
                    f"{html.escape(str(status))}</td></tr>")
    return ("<table class=\"gates\"><thead><tr><th>gate</th><th>level</th><th>value</th><th>threshold</th>"
            "<th>status</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def figure_divs(tables: Mapping[str, pd.DataFrame], pack: Mapping) -> list[tuple[str, str, str]]:
    """(figure id, section, HTML div) per figure; only the first div carries plotly.js."""
    data = ReportData(tables)
    out = []
    for i, (fig_id, section, build) in enumerate(FIGURES):
        fig = build(data, pack)
        div = fig.to_html(full_html=False, include_plotlyjs=(i == 0), div_id=f"fig-{fig_id}",
                          config=PLOTLY_CONFIG)
        out.append((fig_id, section, div))
    return out


def build_report_html(tables: Mapping[str, pd.DataFrame], pack: Mapping, gates: Mapping, title: str) -> str:
    """The whole report page as one string (offline, plotly.js inlined once)."""
    verdict = run_verdict(gates)
    parts = [
        "<!DOCTYPE html>",
        "<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class=\"verdict\">Verdict: <b>{html.escape(verdict)}</b> "
        f"(hard B gates and stretch B+ gates; PASS_BPLUS requires both)</p>",
        "<h2>Gates</h2>",
        gate_table_html(gates),
    ]
    current = None
    for fig_id, section, div in figure_divs(tables, pack):
        if section != current:
            parts.append(f"<h2>{html.escape(section)}</h2>")
            current = section
        parts.append(f"<div class=\"figure\" id=\"figure-{fig_id}\">{div}</div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def build_parser() -> argparse.ArgumentParser:
    ap = TuningParser(prog="python -m tuning.report", description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", help="a materialised run directory (RUN_ROOT/<run_id>)")
    ap.add_argument("--out", default=None, help="output HTML file (default: reports/segment3a_report_<run_id>.html)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    res = load_run_dir(args.run_dir)
    pack, gates, _ = score_tables(res.tables)
    rid = res.identity["run_id"]
    title = f"Segment 3A realism report — run {rid} (seed {res.identity['seed']})"
    out = Path(args.out) if args.out else Path("reports") / f"segment3a_report_{rid}.html"
    atomic_write_text(out, build_report_html(res.tables, pack, gates, title))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
