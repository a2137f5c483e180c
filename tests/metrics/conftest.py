"""Hand-built golden tables for the metric pack (every expected value is derived by hand in
tests/metrics/test_pack_golden.py) and a synthetic-table fixture for speed and report tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from .synthetic_tables import make_synthetic_tables


def _zone_rows(rows):
    """[(merchant, country, tzid, value), ...] -> key columns + one value column."""
    m, c, z, v = zip(*rows)
    return {"merchant_id": np.array(m, dtype=np.uint64), "legal_country_iso": list(c), "tzid": list(z)}, list(v)


def golden_tables() -> dict[str, pd.DataFrame]:
    # S1: 7 pairs, 4 escalated
    s1 = pd.DataFrame({
        "merchant_id": np.array([1, 1, 2, 2, 3, 3, 4], dtype=np.uint64),
        "legal_country_iso": ["AA", "BB", "AA", "CC", "AA", "DD", "DD"],
        "site_count": [25, 20, 4, 5, 1, 3, 2],
        "zone_count_country": [3, 2, 3, 1, 3, 2, 2],
        "is_escalated": [True, True, True, False, False, True, False],
        "decision_reason": ["default_escalation", "forced_escalation", "default_escalation", "forced_monolithic",
                            "below_min_sites", "default_escalation", "below_min_sites"],
    })
    # S2: AA 3 zones (0.6/0.3/0.1), BB 2 zones (0.995/0.005), CC 1 zone, DD 2 zones (0.5/0.5)
    s2 = pd.DataFrame({
        "country_iso": ["AA", "AA", "AA", "BB", "BB", "CC", "DD", "DD"],
        "tzid": ["A/1", "A/2", "A/3", "B/1", "B/2", "C/1", "D/1", "D/2"],
        "share_effective": [0.6, 0.3, 0.1, 0.995, 0.005, 1.0, 0.5, 0.5],
        "floor_applied": [False, False, True, False, True, False, False, False],
        "bump_applied": [False, False, False, False, True, False, False, False],
    })
    # S3: escalated pairs x Z(c)
    keys, shares = _zone_rows([
        (1, "AA", "A/1", 0.5), (1, "AA", "A/2", 0.3), (1, "AA", "A/3", 0.2),
        (1, "BB", "B/1", 0.96), (1, "BB", "B/2", 0.04),
        (2, "AA", "A/1", 0.7), (2, "AA", "A/2", 0.25), (2, "AA", "A/3", 0.05),
        (3, "DD", "D/1", 0.45), (3, "DD", "D/2", 0.55),
    ])
    s3 = pd.DataFrame({**keys, "share_drawn": shares})
    # S4: escalated pairs plus one NON-escalated pair (3, AA) whose redundant total is wrong (2 != 1)
    keys, counts = _zone_rows([
        (1, "AA", "A/1", 23), (1, "AA", "A/2", 1), (1, "AA", "A/3", 1),
        (1, "BB", "B/1", 19), (1, "BB", "B/2", 1),
        (2, "AA", "A/1", 4), (2, "AA", "A/2", 0), (2, "AA", "A/3", 0),
        (3, "AA", "A/1", 1), (3, "AA", "A/2", 0), (3, "AA", "A/3", 0),
        (3, "DD", "D/1", 2), (3, "DD", "D/2", 1),
    ])
    reported = [25, 25, 25, 20, 20, 4, 4, 4, 2, 2, 2, 3, 3]
    s4 = pd.DataFrame({**keys, "zone_site_count": counts, "zone_site_count_sum": reported})
    # zone_alloc: the escalated pairs only, all conserved; (2, AA) is 3/1/0 and (3, DD) 1/2 here
    keys, counts = _zone_rows([
        (1, "AA", "A/1", 23), (1, "AA", "A/2", 1), (1, "AA", "A/3", 1),
        (1, "BB", "B/1", 19), (1, "BB", "B/2", 1),
        (2, "AA", "A/1", 3), (2, "AA", "A/2", 1), (2, "AA", "A/3", 0),
        (3, "DD", "D/1", 1), (3, "DD", "D/2", 2),
    ])
    reported = [25, 25, 25, 20, 20, 4, 4, 4, 3, 3]
    zone_alloc = pd.DataFrame({**keys, "zone_site_count": counts, "zone_site_count_sum": reported,
                               "site_count": reported})
    return {"s1": s1, "s2": s2, "s3": s3, "s4": s4, "zone_alloc": zone_alloc}


@pytest.fixture
def golden() -> dict[str, pd.DataFrame]:
    return golden_tables()


@pytest.fixture(scope="session")
def synthetic() -> dict[str, pd.DataFrame]:
    return make_synthetic_tables(2600, seed=3)
