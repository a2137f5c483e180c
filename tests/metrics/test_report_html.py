"""The offline HTML report: every figure present with data, plotly.js inline exactly once, no CDN."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from engine.metrics import evaluate_gates, metric_pack
from tuning.report import build_report_html
from tuning.report_figures import FIGURE_IDS

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


@pytest.fixture(scope="module")
def page(request):
    from .synthetic_tables import make_synthetic_tables

    tables = make_synthetic_tables(2600, seed=5)
    pack = metric_pack(tables)
    return build_report_html(tables, pack, evaluate_gates(pack), "Report <test> & co")


def test_every_listed_figure_has_data(page):
    assert set(FIGURE_IDS) == EXPECTED_FIGURES
    figures = parse_figures(page)
    assert set(figures) == {f"fig-{fid}" for fid in EXPECTED_FIGURES}
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

