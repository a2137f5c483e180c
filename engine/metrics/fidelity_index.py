"""The population evidence indexed once per evidence object, so a run's fidelity section costs
two dictionary encodings and a few small vectors (engine.metrics.fidelity).

Keys are "country NUL clock" strings, whose string order is the order of the (country, clock)
tuples the pandas formulation grouped and sorted by. ``Kz`` are the evidence's (country, clock)
keys of Z(c); ``U`` is the sorted union of ``Kz`` and the populated keys. A table row maps to its
``Kz`` entry through its (country, tzid) codes; when some row's (country, tzid) is not in Z(c) the
caller falls back to the string formulation (its clock is then the tzid itself).

The evidence is a pure value (engine.world.evidence): the index is cached per object and never
recomputed for it; an object that is garbage collected drops its entry.
"""

from __future__ import annotations

import weakref

import numpy as np
import pandas as pd

from engine.metrics.exact import mean_country_jsd, pandas_group_sum
from engine.metrics.keys import Factorized

_CACHE: dict[int, tuple[weakref.ref, "EvidenceIndex"]] = {}


def clock_keys(country, clock) -> np.ndarray:
    return np.char.add(np.char.add(np.asarray(country, dtype=str), "\x00"), np.asarray(clock, dtype=str))


def _index_of(vocab: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of each value in the sorted ``vocab``, -1 when absent."""
    if vocab.size == 0:
        return np.full(values.size, -1, dtype=np.int64)
    at = np.minimum(np.searchsorted(vocab, values), vocab.size - 1)
    return np.where(vocab[at] == values, at, -1)


class EvidenceIndex:
    def __init__(self, evidence) -> None:
        zc, pop = evidence.zone_clocks, evidence.clock_population
        zcountry, ztz = zc["country_iso"].to_numpy(dtype=str), zc["tzid"].to_numpy(dtype=str)
        self.zkeys = clock_keys(zcountry, zc["clock"].to_numpy(dtype=str))
        self.zcountry = zcountry
        self.pcountry = pop["country_iso"].to_numpy(dtype=str)
        self.pkeys = clock_keys(self.pcountry, pop["clock"].to_numpy(dtype=str))
        self.people = pop["population"].to_numpy().astype(np.float64)
        self._evidence_only()
        self.countries, self.tzids = np.unique(zcountry), np.unique(ztz)
        self.kz, kz_first, kz_of_zone = np.unique(self.zkeys, return_index=True, return_inverse=True)
        self.lut = np.full((self.countries.size, self.tzids.size), -1, dtype=np.int64)
        self.lut[np.searchsorted(self.countries, zcountry), np.searchsorted(self.tzids, ztz)] = kz_of_zone.ravel()
        unique_zones = np.unique(clock_keys(zcountry, ztz)).size == zcountry.size
        self.coded = unique_zones and np.unique(self.pkeys).size == self.pkeys.size
        u, first, inv = np.unique(np.concatenate([self.kz, self.pkeys]), return_index=True, return_inverse=True)
        inv = inv.ravel()
        authored = getattr(evidence, "authored_prior", None)
        if authored is None:
            self.akeys, self.ashare = np.array([], dtype=str), np.zeros(0)
        else:
            akeys = clock_keys(authored["country_iso"].to_numpy(dtype=str), authored["clock"].to_numpy(dtype=str))
            order = np.argsort(akeys, kind="stable")
            self.akeys, self.ashare = akeys[order], authored["share"].to_numpy(dtype=np.float64)[order]
        self.u_authored = self.authored_of(u)   # per U key, looked up once per evidence, not per metric pack
        self.kz_to_u, pop_to_u = inv[:self.kz.size], inv[self.kz.size:]
        self.q = np.zeros(u.size)
        self.q[pop_to_u] = self.people
        self.in_pop = np.zeros(u.size, dtype=bool)
        self.in_pop[pop_to_u] = True
        u_country = np.concatenate([zcountry[kz_first], self.pcountry])[first]
        self.u_countries, u_cid = np.unique(u_country, return_inverse=True)
        self.u_cid = u_cid.ravel()
        self.kz_cid = self.u_cid[self.kz_to_u]
        self.u_multi = np.isin(u_country, self.multi)
        self.u_read = np.isin(u_country, self.read)

    def _evidence_only(self) -> None:
        """alias_count, the populated multi-clock countries, the lone ones (one populated clock among others) and the
        outside-universe share."""
        zuniq, zcount = np.unique(self.zkeys, return_counts=True)
        self.alias_count = int(np.unique(self.zcountry[np.isin(self.zkeys, zuniq[zcount > 1])]).size)
        pop_countries, populated = np.unique(self.pcountry, return_counts=True)
        self.multi = pop_countries[populated >= 2]
        # one populated clock, inside Z(c), beside other clocks of Z(c) (a world's alpha pack may keep a zone nobody
        # lives on): its people say where its prior and outlets belong as surely as a multi-clock country's do
        _, zfirst = np.unique(self.zkeys, return_index=True)
        zc_names, zc_clocks = np.unique(self.zcountry[zfirst], return_counts=True)
        lone = pop_countries[populated == 1]
        inside = np.unique(self.pcountry[np.isin(self.pkeys, self.zkeys)])
        self.lone = lone[np.isin(lone, zc_names[zc_clocks >= 2]) & np.isin(lone, inside)]
        self.read = np.union1d(self.multi, self.lone)   # the countries one country's gates read (F06-F09)
        outside = np.where(np.isin(self.pkeys, self.zkeys), 0.0, self.people)
        pinv = np.searchsorted(pop_countries, self.pcountry)
        per_c = np.bincount(pinv, weights=outside, minlength=pop_countries.size) / \
            np.bincount(pinv, weights=self.people, minlength=pop_countries.size)
        self.outside_share = float(pd.Series(per_c).mean()) if per_c.size else 0.0

    def clock_sums(self, frame: pd.DataFrame, country_col: str, value: str, factorized=None):
        """(per-Kz sum of ``value``, per-Kz "has rows"), or None when a row's zone is not in Z(c).
        Integer values sum exactly; floats as pandas' groupby sum (engine.metrics.exact)."""
        if not self.coded:
            return None
        factorized = factorized or Factorized()
        (cc, cu), (tc, tu) = factorized(frame, country_col), factorized(frame, "tzid")
        ci, ti = _index_of(self.countries, cu), _index_of(self.tzids, tu)
        if (ci < 0).any() or (ti < 0).any():
            return None
        rows = self.lut[ci[cc], ti[tc]] if len(cc) else np.zeros(0, dtype=np.int64)
        if (rows < 0).any():
            return None
        present = np.bincount(rows, minlength=self.kz.size) > 0
        vals = frame[value].to_numpy()
        if vals.dtype.kind in "iub":
            return np.bincount(rows, weights=vals.astype(np.float64), minlength=self.kz.size), present
        return pandas_group_sum(rows, vals, self.kz.size), present  # Kz order is the groupby's key order

    def country_rows(self, sums: np.ndarray, present: np.ndarray, country_ok: np.ndarray, countries: str = "multi"):
        """(country id, observed value, people, authored prior share) of every clock of the multi-clock countries
        (``countries="read"``: and the lone ones, :attr:`read`; ``"all"``: every country) with ``country_ok`` (per U
        country), each country over the union of its observed and populated clocks, grouped by country."""
        p = np.zeros(self.q.size)
        observed = np.zeros(self.q.size, dtype=bool)
        p[self.kz_to_u[present]] = sums[present]
        observed[self.kz_to_u[present]] = True
        keep = (observed | self.in_pop) & country_ok[self.u_cid]
        if countries != "all":
            keep &= self.u_multi if countries == "multi" else self.u_read
        return self.u_cid[keep], p[keep], self.q[keep], self.u_authored[keep]

    def authored_of(self, keys: np.ndarray) -> np.ndarray:
        """The authored prior share of each (country, clock) key (0 where the authoring law gives it none)."""
        at = _index_of(self.akeys, keys)
        return np.where(at >= 0, self.ashare[at] if self.ashare.size else 0.0, 0.0)

    def mean_jsd(self, sums: np.ndarray, present: np.ndarray, country_ok: np.ndarray,
                 countries: str = "multi") -> tuple[float, int, float]:
        """(mean JSD, countries, largest JSD) over :meth:`country_rows`."""
        return mean_country_jsd(*self.country_rows(sums, present, country_ok, countries)[:3])

    def per_country(self, sums: np.ndarray) -> np.ndarray:
        return np.bincount(self.kz_cid, weights=sums, minlength=self.u_countries.size)


def evidence_index(evidence) -> EvidenceIndex:
    key = id(evidence)
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is evidence:
        return hit[1]
    index = EvidenceIndex(evidence)
    try:
        ref = weakref.ref(evidence, lambda _r, k=key: _CACHE.pop(k, None))
    except TypeError:  # not weak-referenceable: no caching
        return index
    _CACHE[key] = (ref, index)
    return index
