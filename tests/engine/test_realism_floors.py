"""realism_floors (once per tuning candidate) equals its pandas formulation bit for bit."""

import numpy as np
import pandas as pd
import pytest

from engine import PolicySet, default_world, run_chain
from engine.policies import authoring


def _reference(s2: pd.DataFrame) -> tuple:
    g = s2.groupby("country_iso", sort=True)
    sums, k = g["alpha_effective"].sum(), g.size()
    tv = s2.assign(k=s2["country_iso"].map(k)).eval("abs(share_effective - 1.0 / k)").groupby(
        s2["country_iso"]).sum() / 2.0
    large = k[k >= authoring.LARGE_K].index
    nonuniform = float((tv.loc[large] >= authoring.NONUNIFORM_TV).mean()) if len(large) else 1.0
    low, high = sums[sums < authoring.ALPHA_SUM_MIN], sums[sums > authoring.ALPHA_SUM_MAX]
    reasons = []
    if len(low):
        reasons.append(f"alpha sum below {authoring.ALPHA_SUM_MIN} in {len(low)} countries (e.g. {low.index[0]})")
    if len(high):
        reasons.append(f"alpha sum above {authoring.ALPHA_SUM_MAX} in {len(high)} countries (e.g. {high.index[0]})")
    if nonuniform < authoring.NONUNIFORM_MIN_SHARE:
        reasons.append(f"only {nonuniform:.1%} of large multi-zone countries non-uniform "
                       f"(< {authoring.NONUNIFORM_MIN_SHARE:.0%})")
    return float(sums.min()), float(sums.max()), nonuniform, len(large), reasons


@pytest.fixture(scope="module")
def s2():
    return run_chain(PolicySet.from_dir("policies"), 42, default_world()).cores["s2"]


def test_realism_floors_equal_the_pandas_formulation(s2):
    rng = np.random.default_rng(11)
    for scale in (None, 0.01, 1.0, 250.0):
        table = s2 if scale is None else s2.assign(alpha_effective=rng.random(len(s2)) * scale,
                                                   share_effective=rng.random(len(s2)))
        got = authoring.realism_floors(table)
        assert (got["alpha_sum_min"], got["alpha_sum_max"], got["nonuniform_share"], got["large_countries"],
                got["reasons"]) == _reference(table)
        assert got["passed"] == (not got["reasons"])
    assert authoring.realism_floors(s2.assign(alpha_effective=0.001))["reasons"]   # a failing table is tested


def _flat_priors(countries: dict[str, int]) -> pd.DataFrame:
    rows = [(c, f"Z/{c}{i}", 30.0 / k, 1.0 / k) for c, k in countries.items() for i in range(k)]
    return pd.DataFrame(rows, columns=["country_iso", "tzid", "alpha_effective", "share_effective"])


def test_a_country_whose_people_are_evenly_spread_is_not_judged_by_the_non_uniform_floor():
    """Uniform priors in four large countries: without evidence (or with uneven evidence) the floor fails them (0%
    non-uniform); where the evidence itself spreads the people within 0.05 TV of uniform, uniform priors are
    faithful and those countries are not judged. A country with uneven people and flat priors still counts."""
    countries = {"AA": 4, "BB": 5, "CC": 6, "DD": 4}
    s2 = _flat_priors(countries)
    even = s2[["country_iso", "tzid"]].assign(population=1000.0)
    uneven = even.assign(population=[10.0 ** (i % 4) for i in range(len(even))])
    assert authoring.realism_floors(s2)["passed"] is False
    assert authoring.realism_floors(s2, authoring.evenly_populated(uneven))["reasons"] == [
        "only 0.0% of large multi-zone countries non-uniform (< 70%)"]
    got = authoring.realism_floors(s2, authoring.evenly_populated(even))
    assert got["passed"] and got["evenly_populated"] == ["AA", "BB", "CC", "DD"] and got["judged_countries"] == 0
    mixed = pd.concat([even[even["country_iso"] != "DD"], uneven[uneven["country_iso"] == "DD"]])
    got = authoring.realism_floors(s2, authoring.evenly_populated(mixed))
    assert (got["judged_countries"], got["nonuniform_share"], got["passed"]) == (1, 0.0, False)
    assert got["reasons"] == ["only 0.0% of large multi-zone countries non-uniform (< 70%) among the 1 whose people "
                              "are not evenly spread"]
    # one zone 30% above the others: TV 0.052 in a country of 4 zones (judged), 0.045 and 0.040 in 5 and 6 (even)
    near = even.assign(population=np.where(even["tzid"].str.endswith("0"), 1000.0 * 1.3, 1000.0))
    tv = {c: 0.5 * np.abs(g / g.sum() - 1 / len(g)).sum() for c, g in near.groupby("country_iso")["population"]}
    expect = sorted(c for c, v in tv.items() if v < authoring.NONUNIFORM_TV)
    got = authoring.realism_floors(s2, authoring.evenly_populated(near))
    assert got["evenly_populated"] == expect and 0 < len(expect) < 4


def test_the_default_worlds_large_countries_are_all_judged(s2):
    got = authoring.realism_floors(s2, authoring.evenly_populated(default_world().population))
    assert got["evenly_populated"] == [] and got["judged_countries"] == got["large_countries"] == 9
    assert got == {**authoring.realism_floors(s2), "judged_countries": 9, "evenly_populated": []}


def test_a_country_the_evidence_has_no_one_in_is_judged():
    """No people in the evidence says nothing of their spread: such a country is judged by the non-uniform floor
    (all nine large countries without people exempted a flat S2)."""
    s2 = _flat_priors({"AA": 4, "BB": 5})
    nobody = s2[["country_iso", "tzid"]].assign(population=0.0)
    assert authoring.evenly_populated(nobody) == frozenset()
    assert authoring.realism_floors(s2, authoring.evenly_populated(nobody))["passed"] is False
