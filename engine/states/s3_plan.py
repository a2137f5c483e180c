"""The policy-free half of S3/S4: where the escalated pairs' rows lie and what the keyed streams draw for them.

A :class:`DrawPlan` holds, for one merchant range, the zone layout of its escalated pairs over Z_ord(c), the
one Dirichlet uniform per (pair, zone) its keyed substreams give, the stream ids (RNG evidence) and the
rows' key columns. None of it reads a policy value: it depends on the escalation outcome (S1), the zone
universe and the RNG master (seed and world) only. That is the common-random-numbers law made concrete: a sweep
draws these once per seed and S1 outcome and every candidate's S3/S4 reuses them (the chain caches the plan as
the state ``S3.plan``). The pair-level uniforms of the optional streams (merchant jitter, stochastic rounding)
are drawn on first use and kept with the plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from engine.core.errors import EngineError
from engine.core.rng import Keyring, pair_keys, stream_ids, uniforms
from engine.states.common import ZoneLayout, layout_keys, take_strings, zone_layout

STREAM = "zone_dirichlet"
E_PRIOR_SURFACE = "E3A_S3_003_PRIOR_SURFACE_INCOMPLETE"


@dataclass(frozen=True)
class DrawPlan:
    """One merchant range's layout and its keyed draws (see the module docstring)."""

    layout: ZoneLayout
    master: bytes
    u: np.ndarray                 # (R,) Dirichlet uniforms: counter = the zone's position in Z_ord(c)
    stream_ids: np.ndarray        # (P,) object: hex of each pair's Dirichlet key
    key_columns: dict             # merchant_id, legal_country_iso, tzid of the rows
    row_stream_id: pd.Series      # (R,) the pair's stream id on each row
    keyring: Keyring | None = field(default=None, compare=False, repr=False)   # the seed's keys over the domain
    domain_rows: np.ndarray | None = field(default=None, compare=False, repr=False)   # (P,) the pairs' rows in it
    _pair_u: dict = field(default_factory=dict, compare=False, repr=False)
    _by_zone: dict = field(default_factory=dict, compare=False, repr=False)

    def zone_values(self, values: dict) -> np.ndarray:
        """(R,) ``values[(country, tzid)]`` of each row's zone, NaN where absent: the rows' distinct zones are looked
        up once per plan and ``values`` object (S4's people shares: every candidate of a seed reads the same)."""
        hit = self._by_zone.get(id(values))
        if hit is not None and hit[0] is values:
            return hit[1]
        layout = self.layout   # a row's zone is its S2 row (row_prior): the S2 table's zones are looked up, not rows
        per_zone = np.fromiter((values.get((c, t), np.nan) for c, t in zip(layout.zone_countries, layout.tzids)),
                               dtype=np.float64, count=len(layout.tzids))
        self._by_zone.clear()   # one values object at a time (the evidence's, for the life of the plan)
        self._by_zone[id(values)] = (values, per_zone[layout.row_prior])
        return self._by_zone[id(values)][1]

    def pair_uniforms(self, stream: str) -> np.ndarray:
        """(P,) one uniform per pair at counter 0 of ``stream`` (drawn once per plan)."""
        if stream not in self._pair_u:
            keys = _keys(self.layout, self.master, stream, self.keyring, self.domain_rows)
            self._pair_u[stream] = uniforms(keys, np.zeros(len(keys), dtype=np.uint64))
        return self._pair_u[stream]


def _keys(layout: ZoneLayout, master: bytes, stream: str, keyring: Keyring | None, rows: np.ndarray | None):
    """The layout's pair keys on ``stream``: from the seed's keyring (hashed once per pair and seed), else hashed."""
    if keyring is not None:
        return keyring.keys(stream, rows)
    return pair_keys(master, stream, layout.pair_merchant.tolist(), layout.pair_country.tolist())


def keyring(pairs: pd.DataFrame, master: bytes) -> Keyring:
    """The seed's keyring over the pair domain D, with the Dirichlet stream's keys allocated."""
    return Keyring(master, pairs["merchant_id"].to_numpy(dtype=np.uint64),
                   pairs["legal_country_iso"].to_numpy(dtype=object), streams=(STREAM,))


def zone_table(universe: pd.DataFrame) -> pd.DataFrame:
    """Z_ord: the universe's (country_iso, tzid) rows sorted by country then tzid, the order S2 writes its rows in."""
    rows = sorted(set(zip(universe["country_iso"].tolist(), universe["tzid"].tolist())))
    return pd.DataFrame(rows, columns=["country_iso", "tzid"], dtype=object)


def missing_countries(s1: pd.DataFrame, zones: pd.DataFrame) -> list[str]:
    """Escalated countries that have no zone in the universe (sorted)."""
    escalated = set(s1.loc[s1["is_escalated"].to_numpy(dtype=bool), "legal_country_iso"].tolist())
    return sorted(escalated - set(zones["country_iso"].tolist()))


def draw_plan(layout: ZoneLayout, master: bytes, keyring: Keyring | None = None,
              domain_rows: np.ndarray | None = None) -> DrawPlan:
    """The plan of one layout: its Dirichlet uniforms, stream ids and key columns (``keyring``: the seed's keys
    over the domain, ``domain_rows`` the layout's pairs in it)."""
    keys = _keys(layout, master, STREAM, keyring, domain_rows)
    u = uniforms(keys[layout.row_pair], layout.row_zone_pos.astype(np.uint64))
    sids = np.asarray(stream_ids(keys), dtype=object)
    return DrawPlan(layout=layout, master=master, u=u, stream_ids=sids, key_columns=layout_keys(layout),
                    row_stream_id=take_strings(sids, layout.row_pair), keyring=keyring, domain_rows=domain_rows)


def plan_for(s1_part: pd.DataFrame, zones: pd.DataFrame, master: bytes, ring: Keyring | None = None) -> DrawPlan:
    """The plan of one merchant range of S1's core (rows in the domain's order: its index is the row's position in
    D, which ``ring`` is laid over)."""
    layout, rows = zone_layout(s1_part, zones), None
    if ring is not None:
        rows = s1_part.index.to_numpy(dtype=np.int64)[s1_part["is_escalated"].to_numpy(dtype=bool)]
        if not ring.holds(rows, layout.pair_merchant):
            raise EngineError("E3A_S3_004_PLAN_DOMAIN", "S1's rows are not the pair domain the keyring was laid over")
    return draw_plan(layout, master, ring, rows)


def row_strings(plans: list[DrawPlan]) -> dict:
    """The string columns of every plan's rows, in plan order: one plan's own, or the plans' joined once."""
    cols = {name: [p.key_columns[name] for p in plans] for name in ("legal_country_iso", "tzid")}
    cols["rng_stream_id"] = [p.row_stream_id for p in plans]
    if len(plans) == 1:
        return {name: parts[0] for name, parts in cols.items()}
    return {name: pd.concat(parts, ignore_index=True) for name, parts in cols.items()}


def check_prior_surface(plan: DrawPlan, s2: pd.DataFrame) -> None:
    """S2's rows must be exactly the Z_ord rows the plan was laid out on (S2 writes every universe row, sorted)."""
    lay = plan.layout
    countries = s2["country_iso"].to_numpy(dtype=object)
    tzids = s2["tzid"].to_numpy(dtype=object)
    if len(tzids) != len(lay.tzids) or not (np.array_equal(tzids, lay.tzids)
                                            and np.array_equal(countries, lay.zone_countries)):
        raise EngineError(E_PRIOR_SURFACE, "the S2 prior rows are not the zone universe's (country, tzid) rows")
