"""The realism figures of the run report, one function per figure, all pure (tables + pack -> Figure).

Histograms are binned here with numpy (the HTML stays small at any table size); scatter plots keep
at most ``MAX_POINTS`` points (an even, deterministic stride) and say so in their title.
The fidelity figures (``fidelity_figures``) need the world's population evidence as well: one grouped
bar chart per multi-clock country, population vs S2 prior vs S4 realised share per clock.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from engine import OVERSERVED_RATIO, REALISED_MIN_OUTLETS, jsd, share_table
from engine import count_surface_pairs, escalated_pair_index, s2_country_table, s3_cell_table, s3_pair_arrays

MAX_POINTS = 20_000
SHARE_BINS = np.linspace(0.0, 1.0, 51)
THRESHOLDS = (0.01, 0.02, 0.05, 0.10, 0.20, 0.30, 0.50)


def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    """Titles and size; the "plotly_white" template is applied when the figure is written (report.py), once
    as plain JSON, because validating it into every Figure costs ~10 ms a figure."""
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, height=380,
                      margin={"l": 60, "r": 20, "t": 60, "b": 50}, bargap=0.05)
    return fig


def _hist_trace(values: np.ndarray, name: str, bins: np.ndarray = SHARE_BINS) -> go.Bar:
    counts, edges = np.histogram(np.asarray(values, dtype=np.float64), bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    return go.Bar(x=centers.tolist(), y=counts.tolist(), width=float(edges[1] - edges[0]), name=name,
                  opacity=0.85, hovertemplate="%{x:.3f}: %{y}<extra>" + name + "</extra>")


def _sample(n: int) -> tuple[np.ndarray, str]:
    if n <= MAX_POINTS:
        return np.arange(n), ""
    idx = np.linspace(0, n - 1, MAX_POINTS).astype(np.int64)
    return idx, f" (every {n / MAX_POINTS:.1f}th of {n})"


def _diagonal() -> go.Scatter:
    return go.Scatter(x=[0.0, 1.0], y=[0.0, 1.0], mode="lines", name="y = x", line={"dash": "dot", "color": "gray"})


class ReportData:
    """Derived per-pair / per-country / per-cell tables shared by the figures (computed once)."""

    def __init__(self, tables: Mapping[str, pd.DataFrame]) -> None:
        self.tables = tables
        self.countries = s2_country_table(tables["s2"])
        self.s3_pairs = pd.DataFrame(s3_pair_arrays(tables["s3"]))
        self.s3_cells = s3_cell_table(tables["s3"])
        self.s4_pairs = count_surface_pairs(tables["s4"])
        self.s4_escalated = self.s4_pairs.iloc[escalated_pair_index(tables["s1"], self.s4_pairs)]
        self.za_pairs = count_surface_pairs(tables["zone_alloc"])

    @property
    def multi_tz(self) -> pd.DataFrame:
        return self.countries[self.countries["tz_count"] > 1]


def fig_s1_zone_count(d: ReportData, pack: Mapping) -> go.Figure:
    curve = pack["s1"]["zone_count_curve"]
    fig = go.Figure()
    for supported, name in ((True, "supported (>= 25 pairs)"), (False, "unsupported (< 25 pairs)")):
        rows = [b for b in curve if b["supported"] is supported]
        fig.add_trace(go.Bar(x=[b["zone_count_country"] for b in rows], y=[b["escalation_rate"] for b in rows],
                             text=[f"n={b['pairs']}" for b in rows], textposition="outside", name=name,
                             customdata=[b["pairs"] for b in rows],
                             hovertemplate="zones %{x}: rate %{y:.3f}, pairs %{customdata}<extra></extra>"))
    s1 = pack["s1"]
    return _layout(fig, f"S1 escalation rate by zone count (violations {s1['zone_count_curve_monotonic_violations']},"
                        f" max dip {s1['zone_count_curve_major_dip_max_abs']:.3f})",
                   "zone_count_country", "escalation rate")


def fig_s1_site_bucket(d: ReportData, pack: Mapping) -> go.Figure:
    curve = pack["s1"]["site_count_curve"]
    fig = go.Figure(go.Bar(x=[b["bucket"] for b in curve], y=[b["escalation_rate"] for b in curve],
                           text=[f"n={b['pairs']}" for b in curve], textposition="outside", name="escalation rate",
                           customdata=[b["pairs"] for b in curve],
                           hovertemplate="sites %{x}: rate %{y:.3f}, pairs %{customdata}<extra></extra>"))
    return _layout(fig, "S1 escalation rate by site-count bucket", "site_count bucket", "escalation rate")


def fig_s2_top1_hist(d: ReportData, pack: Mapping) -> go.Figure:
    fig = go.Figure(_hist_trace(d.multi_tz["top1_share"].to_numpy(), "multi-TZ countries"))
    return _layout(fig, f"S2 prior top1 share, multi-TZ countries (n={len(d.multi_tz)})", "top1 share_effective",
                   "countries")


def fig_s2_hhi_ecdf(d: ReportData, pack: Mapping) -> go.Figure:
    hhi = np.sort(d.multi_tz["hhi"].to_numpy(dtype=np.float64))
    ecdf = (np.arange(hhi.size) + 1) / max(hhi.size, 1)
    fig = go.Figure(go.Scatter(x=hhi.tolist(), y=ecdf.tolist(), mode="lines", line_shape="hv", name="ECDF"))
    return _layout(fig, f"S2 HHI ECDF, multi-TZ countries (n={hhi.size})", "HHI", "fraction of countries")


def fig_s2_tz_count_vs_top1(d: ReportData, pack: Mapping) -> go.Figure:
    c = d.countries
    fig = go.Figure(go.Scatter(x=c["tz_count"].tolist(), y=c["top1_share"].tolist(), mode="markers",
                               text=c["country_iso"].astype(str).tolist(), name="countries",
                               hovertemplate="%{text}: %{x} zones, top1 %{y:.3f}<extra></extra>"))
    return _layout(fig, f"S2 zone count vs top1 share (n={len(c)} countries)", "tz_count", "top1 share_effective")


def fig_s3_top1_hist(d: ReportData, pack: Mapping) -> go.Figure:
    fig = go.Figure(_hist_trace(d.s3_pairs["top1_share"].to_numpy(), "escalated pairs"))
    return _layout(fig, f"S3 drawn top1 share per pair (n={len(d.s3_pairs)})", "top1 share_drawn", "pairs")


def _mean_zones_at_or_above(shares: np.ndarray, pair_codes: np.ndarray, n_pairs: int) -> list[float]:
    out = []
    for t in THRESHOLDS:
        per_pair = np.bincount(pair_codes, weights=(shares >= t).astype(np.float64), minlength=n_pairs)
        out.append(float(per_pair.mean()) if n_pairs else 0.0)
    return out


def fig_effective_zones(d: ReportData, pack: Mapping) -> go.Figure:
    from engine import key_codes

    s3, s4 = d.tables["s3"], d.tables["s4"]
    fig = go.Figure()
    codes, n = key_codes([s3["merchant_id"], s3["legal_country_iso"]])
    fig.add_trace(go.Scatter(x=list(THRESHOLDS), y=_mean_zones_at_or_above(s3["share_drawn"].to_numpy(), codes, n),
                             mode="lines+markers", name="S3 share_drawn"))
    codes, n = key_codes([s4["merchant_id"], s4["legal_country_iso"]])
    counts = s4["zone_site_count"].to_numpy(dtype=np.float64)
    totals = np.bincount(codes, weights=counts, minlength=n)[codes]
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    fig.add_trace(go.Scatter(x=list(THRESHOLDS), y=_mean_zones_at_or_above(share, codes, n), mode="lines+markers",
                             name="S4 count share"))
    fig.update_xaxes(type="log")
    return _layout(fig, "Effective zone count by share threshold (mean zones per pair with share >= t)",
                   "share threshold t", "mean zones per pair")


def fig_s3_mean_vs_s2(d: ReportData, pack: Mapping) -> go.Figure:
    s2 = d.tables["s2"][["country_iso", "tzid", "share_effective"]].astype({"country_iso": str, "tzid": str})
    cells = d.s3_cells.astype({"legal_country_iso": str, "tzid": str}).merge(
        s2, left_on=["legal_country_iso", "tzid"], right_on=["country_iso", "tzid"], how="inner")
    idx, note = _sample(len(cells))
    cells = cells.iloc[idx]
    fig = go.Figure([go.Scatter(x=cells["share_effective"].tolist(), y=cells["mean_share"].tolist(), mode="markers",
                                text=(cells["legal_country_iso"] + " " + cells["tzid"]).tolist(),
                                marker={"size": 5, "opacity": 0.6}, name="(country, zone) cells",
                                hovertemplate="%{text}: prior %{x:.3f}, S3 mean %{y:.3f}<extra></extra>"),
                     _diagonal()])
    return _layout(fig, f"S3 mean drawn share vs S2 prior share per (country, zone){note}", "S2 share_effective",
                   "S3 mean share_drawn")


def fig_s3_std_log_hist(d: ReportData, pack: Mapping) -> go.Figure:
    kept = d.s3_cells[(d.s3_cells["merchant_count"] > 1)]["merchant_share_std"].to_numpy(dtype=np.float64)
    positive = kept[kept > 0]
    logs = np.log10(positive) if positive.size else np.zeros(0)
    lo = float(np.floor(logs.min())) if logs.size else -6.0
    bins = np.linspace(min(lo, -6.0), 0.0, 49)
    fig = go.Figure(_hist_trace(logs, "cells with > 1 merchant", bins))
    med = pack["s3"]["merchant_share_std_median"]
    for x, name in ((np.log10(0.02), "B floor 0.02"), (np.log10(0.04), "B+ floor 0.04")):
        fig.add_vline(x=float(x), line_dash="dash", annotation_text=name)
    return _layout(fig, f"log10 S3 merchant share std per cell (n={kept.size}, {kept.size - positive.size} zero;"
                        f" median {med:.4f})", "log10 std(share_drawn)", "cells")


def fig_s3_vs_s4_top1(d: ReportData, pack: Mapping) -> go.Figure:
    s3 = d.s3_pairs.astype({"legal_country_iso": str})
    s4 = d.s4_escalated.astype({"legal_country_iso": str})
    joined = s3.merge(s4, on=["merchant_id", "legal_country_iso"], suffixes=("_s3", "_s4"))
    idx, note = _sample(len(joined))
    joined = joined.iloc[idx]
    fig = go.Figure([go.Scatter(x=joined["top1_share_s3"].tolist(), y=joined["top1_share_s4"].tolist(),
                                mode="markers", marker={"size": 4, "opacity": 0.5}, name="escalated pairs"),
                     _diagonal()])
    return _layout(fig, f"S3 drawn top1 vs S4 integerised top1 per escalated pair{note}", "S3 top1 share",
                   "S4 top1 share")


def fig_s4_nonzero_hist(d: ReportData, pack: Mapping) -> go.Figure:
    nz = d.s4_escalated["nonzero_zone_count"].to_numpy(dtype=np.int64)
    values, counts = np.unique(nz, return_counts=True)
    fig = go.Figure(go.Bar(x=values.tolist(), y=counts.tolist(), name="escalated pairs",
                           text=[str(c) for c in counts], textposition="outside"))
    return _layout(fig, f"S4 zones with >= 1 site per escalated pair (multi-zone rate "
                        f"{pack['s4']['escalated_multi_zone_rate']:.3f})", "nonzero zones", "pairs")


def fig_s4_top1_hist(d: ReportData, pack: Mapping) -> go.Figure:
    fig = go.Figure(_hist_trace(d.s4_escalated["top1_share"].to_numpy(), "escalated pairs"))
    return _layout(fig, f"S4 top1 share (counts) per escalated pair (median {pack['s4']['top1_share_median']:.3f})",
                   "top1 share", "pairs")


def fig_zone_alloc_top1_hist(d: ReportData, pack: Mapping) -> go.Figure:
    fig = go.Figure(_hist_trace(d.za_pairs["top1_share"].to_numpy(), "zone_alloc pairs"))
    return _layout(fig, f"zone_alloc top1 share per pair (median {pack['zone_alloc']['top1_share_median']:.3f})",
                   "top1 share", "pairs")


# (figure id, section heading, builder) in report order
FIGURES: tuple[tuple[str, str, Callable[[ReportData, Mapping], go.Figure]], ...] = (
    ("s1_escalation_by_zone_count", "S1 escalation", fig_s1_zone_count),
    ("s1_escalation_by_site_bucket", "S1 escalation", fig_s1_site_bucket),
    ("s2_top1_histogram", "S2 priors", fig_s2_top1_hist),
    ("s2_hhi_ecdf", "S2 priors", fig_s2_hhi_ecdf),
    ("s2_tz_count_vs_top1", "S2 priors", fig_s2_tz_count_vs_top1),
    ("s3_top1_histogram", "S3 shares", fig_s3_top1_hist),
    ("effective_zone_count_by_threshold", "S3 shares", fig_effective_zones),
    ("s3_mean_share_vs_s2_prior", "S3 shares", fig_s3_mean_vs_s2),
    ("s3_std_log10_histogram", "S3 shares", fig_s3_std_log_hist),
    ("s3_vs_s4_top1", "S4 counts", fig_s3_vs_s4_top1),
    ("s4_nonzero_zone_histogram", "S4 counts", fig_s4_nonzero_hist),
    ("s4_top1_histogram", "S4 counts", fig_s4_top1_hist),
    ("zone_alloc_top1_histogram", "zone_alloc", fig_zone_alloc_top1_hist),
)
FIGURE_IDS = tuple(fid for fid, _, _ in FIGURES)


# ----------------------------------------------------------------------------- fidelity (needs the evidence)

FIDELITY_SECTION = "Fidelity: population vs prior vs realised shares per clock"
SHARE_SERIES = (("population_share", "population (GeoNames cities)", "#7f7f7f"),
                ("prior_share", "S2 prior (share_effective)", "#1f77b4"),
                ("realised_share", "S4 realised (outlets)", "#ff7f0e"))


def fidelity_share_frame(tables: Mapping[str, pd.DataFrame], evidence) -> pd.DataFrame:
    """``engine.metrics.share_table`` plus a label per (country, clock): the Z(c) name(s) of the clock
    (aliases joined with " = "), or the clock marked as outside Z(c)."""
    t = share_table(tables, evidence)
    zc = evidence.zone_clocks.astype({"country_iso": str, "tzid": str, "clock": str})
    names = zc.groupby(["country_iso", "clock"])["tzid"].agg(lambda z: " = ".join(sorted(z)))
    keys = list(zip(t["country_iso"].astype(str), t["clock"].astype(str)))
    t["in_universe"] = [k in names.index for k in keys]
    t["label"] = [names[k] if k in names.index else f"{k[1]} (not in Z(c))" for k in keys]
    return t


OVER_SERVED_MIN_OUTLETS = 5   # the ratio is gate 3A-F07's, OVERSERVED_RATIO


def over_served_clocks(frame: pd.DataFrame) -> pd.DataFrame:
    """The clocks (rows of :func:`fidelity_share_frame`) whose realised share of their country's S4 outlets is at
    least :data:`engine.OVERSERVED_RATIO` times their share of its people (any share where nobody lives), holding at
    least :data:`OVER_SERVED_MIN_OUTLETS` outlets: what a mean JSD weighs by a tiny clock's tiny mass, listed.
    ``excess`` is the outlets beyond the clock's population share of its country's outlets. Worst first."""
    t = frame[frame["population_share"].notna() & (frame["s4_outlets"] >= OVER_SERVED_MIN_OUTLETS)].copy()
    country_outlets = frame.groupby("country_iso")["s4_outlets"].sum()
    # float whatever the codes' dtype: mapping an empty Series of Arrow strings gives an Arrow string Series
    t["country_outlets"] = t["country_iso"].map(country_outlets).astype(np.float64)
    t["excess"] = t["s4_outlets"] - t["population_share"] * t["country_outlets"]
    pop = t["population_share"].to_numpy(dtype=np.float64)
    t["ratio"] = np.divide(t["realised_share"].to_numpy(dtype=np.float64), pop, out=np.full(len(t), np.inf),
                           where=pop > 0)
    t = t[t["ratio"] >= OVERSERVED_RATIO]
    return t.sort_values(["ratio", "excess", "country_iso", "clock"], ascending=[False, False, True, True])


def _country_jsd(rows: pd.DataFrame, column: str) -> float | None:
    p = rows[column].fillna(0.0).to_numpy(dtype=np.float64)
    q = rows["population"].to_numpy(dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return None
    return jsd(p, q)


def _fmt_jsd(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def fig_fidelity_country(rows: pd.DataFrame, iso: str, name: str) -> go.Figure:
    """Population vs S2 prior vs S4 realised share on each clock of one country (grouped bars)."""
    rows = rows.sort_values(["population", "label"], ascending=[False, True])
    outlets = int(rows["s4_outlets"].sum())
    prior = _country_jsd(rows, "share_effective")
    realised = _country_jsd(rows, "s4_outlets") if outlets >= REALISED_MIN_OUTLETS else None
    fig = go.Figure()
    custom = [[int(n), int(pop)] for n, pop in zip(rows["s4_outlets"], rows["population"])]
    for column, label, color in SHARE_SERIES:
        values = [None if pd.isna(v) else float(v) for v in rows[column]]
        fig.add_trace(go.Bar(x=rows["label"].tolist(), y=values, name=label, marker_color=color,
                             customdata=custom,
                             hovertemplate="%{x}: %{y:.4f} (S4 outlets %{customdata[0]}, population "
                                           "%{customdata[1]:,})<extra>" + label + "</extra>"))
    fig.update_layout(barmode="group")
    unpopulated = int(rows.loc[rows["population"] <= 0, "s4_outlets"].sum())
    realised_txt = _fmt_jsd(realised) if outlets >= REALISED_MIN_OUTLETS else f"n/a (< {REALISED_MIN_OUTLETS} outlets)"
    return _layout(fig, f"{iso} {name}: JSD prior {_fmt_jsd(prior)}, realised {realised_txt}; "
                        f"S4 outlets {outlets}, {unpopulated} in unpopulated clocks", "clock (published name)",
                   "share within the country")


def fidelity_figures(tables: Mapping[str, pd.DataFrame], evidence,
                     country_names: Mapping[str, str] | None = None) -> list[tuple[str, go.Figure]]:
    """(figure id, figure) per country with two or more clocks (in Z(c) or populated), by country code."""
    frame = fidelity_share_frame(tables, evidence)
    names = dict(country_names or {})
    out = []
    for iso, rows in frame.groupby("country_iso", sort=True):
        if len(rows) < 2:
            continue
        out.append((f"fidelity_shares_{iso}", fig_fidelity_country(rows, str(iso), names.get(str(iso), ""))))
    return out
