"""One self-contained, offline HTML realism report of a run: gate table on top, then the figures.

    python -m tuning.report RUN_DIR [--out FILE.html]

plotly.js is inlined exactly once (``include_plotlyjs=True`` on the first figure only, never a
CDN); every later figure reuses it. ``build_report_html(tables, pack, gates, title, evidence=None)``
is the reusable part (the harness logs its output to MLflow). The HTML carries no timestamp, so the
same run always renders the same bytes. Default output: ``reports/segment3a_report_<run_id>.html``.

Fidelity (this project's own gates 3A-F01..F08 and F10, ``engine.metrics.fidelity``): the plan's verdict and
the fidelity verdict stand side by side on top; the gate table lists the fidelity family; the last
section plots, per multi-clock country, population vs S2 prior vs S4 realised share per clock. A run
on the default world is measured against ``default_world().evidence``; a run on any other world
(``--world``, ``--reference``) shows fidelity as NOT_APPLICABLE (gates N/A), never as a failure.
"""

from __future__ import annotations

import functools
import html
from typing import Mapping

import pandas as pd

from engine import FIDELITY_GATES, OVERSERVED_RATIO, fidelity_verdict, run_verdict
from tuning.report.figures import (FIDELITY_SECTION, FIGURES, OVER_SERVED_MIN_OUTLETS, ReportData,
                                   fidelity_figures, fidelity_share_frame, over_served_clocks)
from tuning.report.files import FAMILY_LEVELS, family_gate_rows, fmt

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table.gates { border-collapse: collapse; font-size: 0.9em; }
table.gates th, table.gates td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
td.PASS { background: #e3f4e3; } td.FAIL { background: #f8e0e0; } td.NA { background: #eeeeee; }
.verdict { font-size: 1.1em; } .figure { margin: 8px 0 24px 0; }
"""


STATUS_CLASS = {"PASS": "PASS", "FAIL": "FAIL", "N/A": "NA"}
FIDELITY_ROWS = (("alias_count", "countries whose Z(c) holds two names of one clock"),
                 ("unpopulated_share", "S4 outlets in clocks without population / all S4 outlets"),
                 ("unpopulated_outlets", "S4 outlets in clocks without population"),
                 ("prior_jsd_mean", "mean JSD (base 2) of S2 priors from population"),
                 ("prior_jsd_countries", "countries in that mean (>= 2 populated clocks)"),
                 ("prior_jsd_max", "the largest of those countries' prior JSDs"),
                 ("prior_overserved_max", "the largest share of a country's S2 prior beyond both 10 times its "
                                          "clocks' people and what the authoring law gives them"),
                 ("prior_top1_unsupported", "countries whose S2 top-1 is under 0.99 only by mass beyond their clocks' "
                                            "people and authored shares"),
                 ("realised_jsd_mean", "mean JSD (base 2) of S4 outlet shares from population"),
                 ("realised_jsd_countries", "countries in that mean (also >= 30 S4 outlets)"),
                 ("realised_jsd_max", "the largest realised JSD of those countries with >= 30 merchants"),
                 ("realised_jsd_max_countries", "countries in that largest value (>= 30 merchants)"),
                 ("outside_universe_share", "mean population share living in clocks absent from Z(c)"),
                 ("populated_multi_clock_countries", "countries with >= 2 populated clocks"))


def gate_table_html(gates: Mapping) -> str:
    rows = []
    for family, gate_id, value, threshold, status in family_gate_rows(gates):
        css = STATUS_CLASS.get(str(status), "")
        rows.append(f"<tr><td>{html.escape(gate_id)}</td><td>{html.escape(FAMILY_LEVELS.get(family, family))}</td>"
                    f"<td>{html.escape(value)}</td><td>{html.escape(threshold)}</td>"
                    f"<td class=\"{css}\">{html.escape(str(status))}</td></tr>")
    return ("<table class=\"gates\"><thead><tr><th>gate</th><th>level</th><th>value</th><th>threshold</th>"
            "<th>status</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def fidelity_table_html(fidelity: Mapping) -> str:
    rows = [f"<tr><td>{key}</td><td>{html.escape(fmt(fidelity.get(key)))}</td><td>{html.escape(text)}</td></tr>"
            for key, text in FIDELITY_ROWS if key in fidelity]
    return ("<table class=\"gates fidelity\"><thead><tr><th>fidelity metric</th><th>value</th><th>definition</th>"
            "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def over_served_html(tables: Mapping[str, pd.DataFrame], evidence) -> str:
    """The clocks served far above their people (:func:`tuning.report.figures.over_served_clocks`), as a table
    under a one-line total. Gate 3A-F07 bounds the prior's mass beyond the same ratio (and beyond the authored
    prior); this lists the realised outlets against the people as counted."""
    frame = fidelity_share_frame(tables, evidence)
    over = over_served_clocks(frame)
    total = float(frame["s4_outlets"].sum())
    excess = float(over["excess"].sum())
    share = f"{excess / total:.2%}" if total > 0 else "n/a"
    head = (f"<p id=\"over-served\">{len(over)} clock(s) hold at least {OVERSERVED_RATIO:g} times their people's share "
            f"of their country's outlets (at least {OVER_SERVED_MIN_OUTLETS} outlets each); outlets beyond their "
            f"people's share: {excess:,.0f} ({share} of all S4 outlets). Gate 3A-F07 bounds the S2 prior's share "
            f"beyond {OVERSERVED_RATIO:g} times a clock's people and beyond the share the authoring law gives it, and "
            f"gate 3A-F08 bounds each country's realised outlets (the JSD of its S4 shares from its people, countries of "
            f"30 merchants or more); this lists the realised outlets against the people as counted.</p>")
    if over.empty:
        return head
    rows = ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _over_served_cells(r)) + "</tr>"
            for _, r in over.iterrows()]
    return (head + "<table class=\"gates over-served\"><thead><tr><th>country</th><th>clock</th><th>people</th>"
            "<th>population share</th><th>S2 prior share</th><th>S4 realised share</th><th>S4 outlets</th>"
            "<th>realised / population</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _over_served_cells(r) -> tuple[str, ...]:
    ratio = "inf (nobody lives there)" if r["ratio"] == float("inf") else f"{r['ratio']:.1f}"
    return (str(r["country_iso"]), str(r["label"]), f"{int(r['population']):,}", f"{r['population_share']:.5f}",
            f"{r['prior_share']:.5f}", f"{r['realised_share']:.5f}", str(int(r["s4_outlets"])), ratio)


def _country_names() -> dict[str, str]:
    from engine import country_names

    return country_names()


def figure_divs(tables: Mapping[str, pd.DataFrame], pack: Mapping, evidence=None) -> list[tuple[str, str, str]]:
    """(figure id, section, HTML div) per figure; only the first div carries plotly.js. The fidelity
    figures (one per multi-clock country) follow when the world's population evidence is given."""
    data = ReportData(tables)
    figures = [(fig_id, section, build(data, pack)) for fig_id, section, build in FIGURES]
    if evidence is not None:
        figures += [(fig_id, FIDELITY_SECTION, fig) for fig_id, fig in
                    fidelity_figures(tables, evidence, _country_names())]
    template = _white_template()
    return [(fig_id, section, _figure_html(fig, template, include_js=(i == 0), div_id=f"fig-{fig_id}"))
            for i, (fig_id, section, fig) in enumerate(figures)]


@functools.lru_cache(maxsize=1)
def _white_template() -> dict:
    import plotly.io as pio

    return pio.templates["plotly_white"].to_plotly_json()


def _figure_html(fig, template: dict, include_js: bool, div_id: str) -> str:
    """The figure's div with the template set as JSON (no per-figure template validation)."""
    import plotly.io as pio

    spec = fig.to_plotly_json()
    spec["layout"] = {**spec.get("layout", {}), "template": template}
    return pio.to_html(spec, full_html=False, include_plotlyjs=include_js, div_id=div_id, config=PLOTLY_CONFIG,
                       validate=False)


def verdict_html(gates: Mapping) -> str:
    verdict, fid = run_verdict(gates), fidelity_verdict(gates)
    note = {"FAITHFUL": "every fidelity gate passes",
            "DISTORTED": "a fidelity gate fails",
            "NOT_APPLICABLE": ("this world brings its own zone universe, no population, and GeoNames cannot grade it; "
                               "fidelity is shown, not graded"),
            "UNMEASURED": "no population evidence was given"}[fid]
    return (f"<p class=\"verdict\">Verdict: <b>{html.escape(verdict)}</b> "
            f"(hard B gates and stretch B+ gates; PASS_BPLUS requires both) &nbsp;·&nbsp; "
            f"Fidelity: <b id=\"fidelity-verdict\">{html.escape(fid)}</b> "
            f"(this project's own gates {FIDELITY_GATES[0].gate_id[:6]}..{FIDELITY_GATES[-1].gate_id[3:6]}: "
            f"{html.escape(note)})</p>")


def build_report_html(tables: Mapping[str, pd.DataFrame], pack: Mapping, gates: Mapping, title: str,
                      evidence=None) -> str:
    """The whole report page as one string (offline, plotly.js inlined once). ``evidence`` (the world's
    ``FidelityEvidence``) adds the per-country population / prior / realised share figures."""
    fidelity = pack.get("fidelity") if isinstance(pack.get("fidelity"), Mapping) else None
    parts = [
        "<!DOCTYPE html>",
        "<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        verdict_html(gates),
        "<h2>Gates</h2>",
        gate_table_html(gates),
    ]
    if fidelity is not None:
        parts += ["<h2>Fidelity metrics</h2>", fidelity_table_html(fidelity)]
    if evidence is not None:
        parts += ["<h2>Clocks served far above their people</h2>", over_served_html(tables, evidence)]
    current = None
    for fig_id, section, div in figure_divs(tables, pack, evidence):
        if section != current:
            parts.append(f"<h2>{html.escape(section)}</h2>")
            current = section
        parts.append(f"<div class=\"figure\" id=\"figure-{fig_id}\">{div}</div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
