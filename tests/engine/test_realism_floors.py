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
