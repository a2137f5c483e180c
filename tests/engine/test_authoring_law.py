"""The authoring law's smoothing (engine.policies.authoring): a town's worth of people a clock, capped at a share of
the country's people per populated clock, so that it never outweighs the evidence of a small country."""

from __future__ import annotations

import math
from fractions import Fraction

import pandas as pd
import yaml
from hypothesis import given, settings, strategies as st

from engine.policies.authoring import (SMOOTH_CAP, SMOOTH_FLOOR, SMOOTH_FRACTION, SMOOTH_RATIO, author_alphas,
                                       author_policies, concentration)


def _population(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["country_iso", "tzid", "population"])


def _alphas(rows) -> dict[str, float]:
    doc = yaml.safe_load(author_policies(_population(rows))["country_zone_alphas"])
    return {e["tzid"]: e["alpha"] for block in doc["countries"].values() for e in block["tzid_alphas"]}


def _law_by_hand(people: list[int]) -> list[float]:
    """Each clock's alpha from the law written out in exact fractions (the module's floats only at the end)."""
    total, k = sum(people), len(people)
    per_clock = Fraction(total, k)
    sigma = Fraction(2, 1000) * per_clock + min(Fraction(1000), Fraction(5, 100) * per_clock)
    smoothed = [p + min(sigma, 9 * p) for p in people]   # a clock is smoothed to at most 10 times its own people
    shares = [q / sum(smoothed) for q in smoothed]
    return [round(concentration(k) * float(s), 6) for s in shares]


def test_a_country_of_a_few_thousand_people_is_authored_by_its_people():
    """Kiribati as a team's toy world gives it (4,990 people on Tarawa, 5 on Kanton, 5 on Kiritimati): 1,000 people a
    clock gave Kanton 12.6% of the prior for 0.1% of the people; capped at 5% of the 1,667 people a clock, 1.7%; and
    at 10 times its own 5 people, 50 of 5,176.6 smoothed people: 0.97%."""
    people = [4990, 5, 5]
    alphas = _alphas([("KI", "Pacific/Tarawa", 4990), ("KI", "Pacific/Kanton", 5), ("KI", "Pacific/Kiritimati", 5)])
    assert [alphas[z] for z in ("Pacific/Tarawa", "Pacific/Kanton", "Pacific/Kiritimati")] == _law_by_hand(people)
    kanton_share = alphas["Pacific/Kanton"] / sum(alphas.values())
    sigma = SMOOTH_FRACTION * 5000 / 3 + SMOOTH_CAP * 5000 / 3
    assert math.isclose(kanton_share, 50 / (4990 + sigma + 50 + 50), rel_tol=1e-5) and 0.0096 < kanton_share < 0.0097
    uncapped = (5 + SMOOTH_FRACTION * 5000 / 3 + SMOOTH_FLOOR) / (5000 + 3 * (SMOOTH_FRACTION * 5000 / 3 + SMOOTH_FLOOR))
    assert uncapped > 0.12   # what the law without its cap gave


def test_a_country_of_twenty_thousand_people_a_clock_or_more_keeps_the_town_floor():
    """At 20,000 people a clock the cap is 1,000 people: the floor is the law's as before (every multi-clock country
    of the default world has 314,000 people a clock or more)."""
    people = [39_000, 1_000]
    alphas = _alphas([("CL", "America/Santiago", 39_000), ("CL", "Pacific/Easter", 1_000)])
    sigma = SMOOTH_FRACTION * 20_000 + SMOOTH_FLOOR
    by_hand = [round(concentration(2) * (p + sigma) / (40_000 + 2 * sigma), 6) for p in people]
    assert [alphas["America/Santiago"], alphas["Pacific/Easter"]] == by_hand == _law_by_hand(people)
    assert math.isclose(SMOOTH_CAP * 20_000, SMOOTH_FLOOR)   # where the cap starts to bind


def test_a_country_without_people_stays_uniform():
    doc = author_alphas(_population([("AQ", "Antarctica/Casey", 0), ("AQ", "Antarctica/Davis", 0),
                                     ("AQ", "Antarctica/Mawson", 0)]))
    block = doc["countries"]["AQ"]
    assert [e["alpha"] for e in block["tzid_alphas"]] == [round(concentration(3) / 3, 6)] * 3
    assert block["notes"] == "mass_basis=smoothing_only"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=10**9), min_size=2, max_size=12))
def test_the_smoothing_never_outweighs_the_evidence(people):
    """Whatever the country's size: each clock's authored share is within (SMOOTH_FRACTION + SMOOTH_CAP) / K of its
    people's share plus what the smoothing takes from the others, and the law agrees with its exact-fraction form."""
    zones = [f"Etc/GMT+{i}" for i in range(len(people))]
    alphas = _alphas([("XX", z, p) for z, p in zip(zones, people)])
    got = [alphas[z] for z in zones]
    assert got == [max(a, 1e-6) for a in _law_by_hand(people)]
    total, k = sum(people), len(people)
    a = concentration(k)
    for p, alpha in zip(people, got):
        excess = alpha / a - p / total   # the share the smoothing adds to this clock
        assert excess <= (SMOOTH_FRACTION + SMOOTH_CAP) / k * (1 + 1e-9) + 1e-6 / a
        assert alpha / a <= SMOOTH_RATIO * p / total * (1 + 1e-9) + 1e-6 / a   # at most 10 times its people's share


def test_a_clock_of_one_person_beside_forty_thousand_gets_at_most_ten_times_its_share():
    """Helper 51's world: KI, FM and PF with 40,000 people on one clock and 1 on each of two others. The country's
    smoothing (693 people a clock) gave each 1-person clock 1.65% of the prior, 660 times its people, and fidelity
    took that authored share as the allowance: certified B with 3-4% of the outlets on clocks of one person. Capped
    at 10 times its own people, 0.025%; the ratio is fidelity's own."""
    from engine.metrics.fidelity import OVERSERVED_RATIO

    assert SMOOTH_RATIO == OVERSERVED_RATIO
    alphas = _alphas([("KI", "Pacific/Tarawa", 40_000), ("KI", "Pacific/Kanton", 1), ("KI", "Pacific/Kiritimati", 1)])
    total = sum(alphas.values())
    sigma = SMOOTH_FRACTION * 40_002 / 3 + SMOOTH_CAP * 40_002 / 3
    for clock in ("Pacific/Kanton", "Pacific/Kiritimati"):
        assert math.isclose(alphas[clock] / total, 10 / (40_000 + sigma + 20), rel_tol=1e-3)
        assert alphas[clock] / total <= 10 / 40_002


_SHARED_TZIDS = ["Africa/Maputo", "Africa/Lagos", "Africa/Nairobi", "Africa/Cairo"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(min_value=0, max_value=3_000_000), min_size=2, max_size=4), min_size=2,
                max_size=4))
def test_a_floor_never_lifts_a_zone_its_own_country_leaves_empty(people):
    """The floor policy is keyed by tzid, Z(c) by country: a tzid some country's people live on and another country's
    evidence (a pack keeping empty zones) leaves empty is floored only where it is lived on. Unconditional, the floor
    gave the empty one FLOOR_PRESENT (CD's empty clock took MZ's 0.10: 0.25% of CD's prior, outlets where nobody
    lives). Populated zones keep their floor as before."""
    from engine.policies.authoring import FLOOR_PRESENT
    from engine.states.s2_priors import priors

    rows = [(iso, tz, float(n)) for iso, counts in zip(["AA", "BB", "CC", "DD"], people)
            for tz, n in zip(_SHARED_TZIDS, counts)]
    pop = _population(rows)
    policies = author_policies(pop)
    s2 = priors(pop[["country_iso", "tzid"]], yaml.safe_load(policies["country_zone_alphas"]),
                yaml.safe_load(policies["zone_floor_policy"])).set_index(["country_iso", "tzid"])
    for iso, tz, n in rows:
        row = s2.loc[(iso, tz)]
        country_people = sum(p for c, _, p in rows if c == iso)
        if n == 0 and country_people > 0:    # left empty by its own evidence: the minimum alpha, no floor
            assert row["alpha_effective"] == 1e-6 and not row["floor_applied"]
        elif n >= 0.01 * country_people > 0:  # a hundredth of its people or more: FLOOR_PRESENT its least alpha
            assert row["alpha_effective"] >= FLOOR_PRESENT


def test_a_world_keeping_an_empty_clock_another_country_lives_on_places_no_outlet_there(tmp_path):
    """End to end, the case that found it: CD's pack keeps Africa/Maputo, empty in CD's evidence, where MZ's people
    live. The authored baseline put 32 of CD's 12,633 outlets there on seed 42 (unpopulated share 0.0013); now none."""
    from engine import run_chain
    from engine.policies import PolicySet
    from engine.world.model import load_world

    pop = _population([("CD", "Africa/Kinshasa", 20e6), ("CD", "Africa/Maputo", 0.0),
                       ("MZ", "Africa/Maputo", 30e6), ("MZ", "Africa/Johannesburg", 1e6)])
    pop.to_csv(tmp_path / "population.csv", index=False)
    pop[["country_iso", "tzid"]].to_csv(tmp_path / "universe.csv", index=False)
    pd.DataFrame({"merchant_id": range(600), "legal_country_iso": ["CD", "MZ"] * 300,
                  "site_count": [3 + (i * 7) % 90 for i in range(600)]}).to_csv(tmp_path / "outlets.csv", index=False)
    (tmp_path / "country_zone_alphas.yaml").write_bytes(author_policies(pop)["country_zone_alphas"])
    world = load_world(tmp_path)
    for seed in (42, 7):
        res = run_chain(PolicySet(author_policies(world.population)), seed, world)
        s4 = res.tables["s4"].set_index(["legal_country_iso", "tzid"])["zone_site_count"]
        assert int(s4.loc[("CD", "Africa/Maputo")].sum()) == 0 < int(s4.loc[("MZ", "Africa/Maputo")].sum())
        assert res.pack["fidelity"]["unpopulated_share"] == 0.0


def _authored_s2(pop: pd.DataFrame) -> pd.DataFrame:
    from engine.states.s2_priors import priors

    policies = author_policies(pop)
    s2 = priors(pop[["country_iso", "tzid"]], yaml.safe_load(policies["country_zone_alphas"]),
                yaml.safe_load(policies["zone_floor_policy"]))
    out = s2.merge(pop, on=["country_iso", "tzid"])
    out["people_share"] = out["population"] / out.groupby("country_iso")["population"].transform("sum")
    return out


def test_thirty_clocks_of_one_person_are_not_floored_into_the_countrys_outlets():
    """Helper 53: the US with 30 extra clocks of one person each. FLOOR_PRESENT lifted each to 0.074% of the prior
    (0.1 / A(c)), 2.2% in all, and fidelity took the authored floor as the allowance: certified B with 2.2% of US
    outlets on 30 people. A floor now lifts a clock to at most FLOOR_LIFT_MAX times its people's share."""
    from engine.policies.authoring import FLOOR_LIFT_MAX

    extra = [f"Etc/GMT+{i}" for i in range(1, 13)] + [f"Etc/GMT-{i}" for i in range(1, 14)]
    rows = [("US", "America/New_York", 120e6), ("US", "America/Chicago", 90e6), ("US", "America/Denver", 15_451)]
    rows += [("US", tz, 1.0) for tz in extra]
    s2 = _authored_s2(_population(rows)).set_index("tzid")
    assert not s2.loc[extra, "floor_applied"].any()
    assert s2.loc[extra, "share_effective"].sum() < 2e-6           # 10 people each; floored: 25 * 0.1 / A(c), 0.9%
    assert s2.loc["America/Denver", "floor_applied"]                # 15,451 people: floored, as before
    assert s2.loc["America/Denver", "share_effective"] <= FLOOR_LIFT_MAX * s2.loc["America/Denver", "people_share"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from([0, 1, 5, 100, 2_000, 15_000, 300_000, 5_000_000, 80_000_000]), min_size=2,
                         max_size=4), min_size=1, max_size=3))
def test_no_floor_lifts_a_clock_beyond_its_bound(people):
    """Whatever the people, shared tzids included: a floored clock's S2 share is at most FLOOR_LIFT_MAX times its
    people's share."""
    from engine.policies.authoring import FLOOR_LIFT_MAX

    rows = [(iso, tz, float(n)) for iso, counts in zip(["AA", "BB", "CC"], people)
            for tz, n in zip(_SHARED_TZIDS, counts)]
    s2 = _authored_s2(_population(rows))
    floored = s2[s2["floor_applied"] & (s2["population"] > 0)]
    assert (floored["share_effective"] <= FLOOR_LIFT_MAX * floored["people_share"] * (1 + 1e-9)).all()


def test_the_default_worlds_floors_are_unconditional_where_it_lives():
    """Its largest lift is America/Indiana/Vincennes at 18.7 times its 15,451 people, under FLOOR_LIFT_MAX: the
    default world's authored floor file is as it was (every present tzid at bump_threshold 0)."""
    from engine.world.model import default_world

    doc = yaml.safe_load(author_policies(default_world().population)["zone_floor_policy"])
    assert {f["bump_threshold"] for f in doc["floors"] if f["floor_value"] == 0.1} == {0.0}
