"""Gate 3A-F06 reads each country's prior at F04's line (0.03): helper 48 moved the priors of four countries of about
one merchant a seed (Georgia, Mongolia, Cyprus, Papua New Guinea) to 0.061-0.064 from their people, their small
clocks' outlets at 3-8 times their people; F08 never reads such a country on one seed and F09's scatter band over
200 held-out seeds let it through, and it certified B+. The prior is exact, seed-free: it is read here."""

from __future__ import annotations

import yaml

from engine import PolicySet, default_world, run_chain
from tests.tuning.conftest import REPO
from tests.tuning.test_pooled_certify import _steer


def test_a_small_country_s_prior_steered_past_f04_s_line_is_distorted_on_any_seed(tmp_path):
    _steer(REPO / "policies", tmp_path / "ge", "GE", k=6.0, under=0.05)   # Moscow's 3.5% of GE's people: 21% of it
    world = default_world()
    doc = yaml.safe_load((tmp_path / "ge" / "country_zone_alphas.yaml").read_text())
    assert len(doc["countries"]["GE"]["tzid_alphas"]) == 2
    steered = run_chain(PolicySet.from_dir(tmp_path / "ge"), 42, world)
    shipped = run_chain(PolicySet.from_dir(REPO / "policies"), 42, world)
    f06 = "3A-F06_prior_jsd_max"
    assert shipped.gates["fidelity"][f06]["status"] == "PASS" and shipped.pack["fidelity"]["prior_jsd_max"] < 0.01
    assert 0.03 < steered.pack["fidelity"]["prior_jsd_max"] < 0.075   # inside the old line, outside F04's
    assert steered.gates["fidelity"][f06]["status"] == "FAIL"
    others = {g: v["status"] for g, v in steered.gates["fidelity"].items() if g != f06}
    assert set(others.values()) == {"PASS"}, others   # no other fidelity gate sees it
