"""Gate 3A-F10 (``fidelity.prior_top1_unsupported``): a country whose population keeps 0.99 or more on one clock
cannot be lifted over S2's top-1 line by mass its people and the authoring law do not give its small clocks.

Helper 44's world: three clocks with 0.1% of Mexico's people together, floored by P1.3 to about 0.5% of its prior
each, F07 reading 0.0048 (each clock within ten times its people plus a little), bought the S2 B+ gate that Mexico's
population fails. Values here are worked out by hand with fractions, and the kernel is matched to a plain loop of
its definition on random countries built around the line."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from engine.metrics import evaluate_gates, fidelity_metrics, fidelity_verdict
from engine.metrics.exact import count_top1_unsupported
from engine.metrics.fidelity import _by_codes, evidence_index
from engine.world.evidence import FidelityEvidence
from tests.metrics.fidelity_reference import reference_fidelity_metrics, top1_unsupported

MX_PEOPLE = {"M": 999_000, "A": 333, "B": 333, "C": 334}
MX_AUTHORED = {"M": 0.9925, "A": 0.0025, "B": 0.0025, "C": 0.0025}
MX_FLOORED = {"M": 0.9853, "A": 0.0049, "B": 0.0049, "C": 0.0049}


def _country(people: dict, prior: dict, authored: dict | None = None, stray: bool = False):
    """Tables and evidence of one country XX whose zone names are its clocks (``stray``: one S4 row on a zone
    outside Z(c), so the metrics take their string path)."""
    zc = pd.DataFrame([("XX", z, z) for z in prior], columns=["country_iso", "tzid", "clock"])
    pop = pd.DataFrame([("XX", z, n) for z, n in people.items() if n > 0], columns=["country_iso", "clock", "population"])
    s2 = pd.DataFrame([("XX", z, v) for z, v in prior.items()], columns=["country_iso", "tzid", "share_effective"])
    s4 = pd.DataFrame([("XX", z, int(round(1000 * v))) for z, v in prior.items()] + ([("XX", "Z/stray", 1)] if stray
                                                                                       else []),
                      columns=["legal_country_iso", "tzid", "zone_site_count"])
    auth = None if authored is None else pd.DataFrame([("XX", z, v) for z, v in authored.items()],
                                                      columns=["country_iso", "clock", "share"])
    return {"s2": s2, "s4": s4}, FidelityEvidence(zc, pop, True, auth)


def _gates(metrics: dict) -> dict:
    return evaluate_gates({"fidelity": metrics})["fidelity"]


@pytest.mark.parametrize("stray", [False, True])
def test_three_floored_small_clocks_buy_the_top1_line_and_are_counted(stray):
    tables, ev = _country(MX_PEOPLE, MX_FLOORED, MX_AUTHORED, stray)
    assert (_by_codes(tables, evidence_index(ev)) is None) is stray
    got = fidelity_metrics(tables, ev)
    # F07: each small clock beyond max(10 x its people share, its authored .0025): 3 x .0049 - 10 x 1,000/1,000,000
    f07 = 3 * Fraction(49, 10_000) - 10 * Fraction(1_000, 1_000_000)
    assert got["prior_overserved_max"] == pytest.approx(float(f07), rel=1e-9) and float(f07) < 0.005
    # the prior's top-1 is .9853, under the line; capped at max(people, authored), the small clocks keep .0025 each
    # and M keeps its .9853 (under its people's .999): .9853 / (.9853 + .0075) = .99245 >= .99
    supported = Fraction(9853, 10_000) / (Fraction(9853, 10_000) + 3 * Fraction(25, 10_000))
    assert float(supported) == pytest.approx(0.99245, abs=1e-5) and supported >= Fraction(99, 100)
    assert got["prior_top1_unsupported"] == 1
    gates = _gates(got)
    assert gates["3A-F07_prior_overserved_max"]["status"] == "PASS"
    assert gates["3A-F10_prior_top1_unsupported"]["status"] == "FAIL"
    assert fidelity_verdict({"fidelity": gates}) == "DISTORTED"
    assert reference_fidelity_metrics(tables, ev)["prior_top1_unsupported"] == 1


def test_the_authored_prior_and_a_collapsed_prior_never_count():
    for prior in (MX_AUTHORED, {"M": 0.9925, "A": 0.0025, "B": 0.0025, "C": 0.0025},
                  {"M": 0.995, "A": 0.002, "B": 0.002, "C": 0.001}):
        tables, ev = _country(MX_PEOPLE, prior, MX_AUTHORED)
        assert fidelity_metrics(tables, ev)["prior_top1_unsupported"] == 0


def test_a_second_clock_its_people_support_does_not_count():
    """97% / 3% of the people, a prior flattened to 90% / 10%: the capped second clock keeps 3%, .9 / .93 < .99."""
    tables, ev = _country({"M": 970_000, "A": 30_000}, {"M": 0.9, "A": 0.1})
    assert fidelity_metrics(tables, ev)["prior_top1_unsupported"] == 0


def test_a_zone_without_people_counts_unless_the_authoring_law_gives_it_its_share():
    """One populated clock and a zone of Z(c) without people: 2% of the prior there is unsupported (supported top-1
    1.0) unless the authored prior gives the zone 1.5% (then .98 / .995 = .985 < .99)."""
    tables, ev = _country({"M": 1_000_000, "E": 0}, {"M": 0.98, "E": 0.02})
    assert fidelity_metrics(tables, ev)["prior_top1_unsupported"] == 1
    tables, ev = _country({"M": 1_000_000, "E": 0}, {"M": 0.98, "E": 0.02}, {"M": 0.985, "E": 0.015})
    assert fidelity_metrics(tables, ev)["prior_top1_unsupported"] == 0


_SHARE = st.one_of(st.floats(0.0, 1.0), st.floats(0.0, 0.01), st.sampled_from([0.0, 0.0025, 0.005]))


@st.composite
def _countries(draw):
    rows = []
    for c in range(draw(st.integers(1, 6))):
        n = draw(st.integers(1, 5))
        top = draw(st.floats(0.95, 1.0))   # near S2's line, where the gate decides
        rest = [draw(_SHARE) for _ in range(n - 1)]
        people = [draw(st.sampled_from([0, 1, 333, 10_000, 999_000])) for _ in range(n)]
        authored = [draw(_SHARE) for _ in range(n)]
        rows += [(c, p, q, a) for p, q, a in zip([top] + rest, people, authored)]
    return rows


@settings(max_examples=300, deadline=None)
@given(_countries())
def test_the_kernel_equals_a_plain_loop_of_its_definition(rows):
    country = np.array([r[0] for r in rows])
    p, q, a = (np.array([r[i] for r in rows], dtype=np.float64) for i in (1, 2, 3))
    want = sum(top1_unsupported(p[country == c].tolist(), q[country == c].tolist(), a[country == c].tolist())
               for c in np.unique(country) if p[country == c].sum() > 0)
    assert count_top1_unsupported(country, p, q, a, 0.99) == want


def test_the_loop_finds_both_answers_on_the_kernel_s_inputs():
    """The property above is not vacuous: its shapes reach both sides of the line."""
    assert top1_unsupported([0.985, 0.015], [1.0, 0.0], [0.0, 0.0])
    assert not top1_unsupported([0.985, 0.015], [0.97, 0.03], [0.0, 0.0])
