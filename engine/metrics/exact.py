"""Vectorised kernels that reproduce, bit for bit, the float results of the scalar/pandas code the
metric pack was first written with (so optimising it never moves a published number).

- ``pandas_group_sum``: pandas' ``groupby(...).sum()`` of float64 (``np.add.reduceat`` over sorted
  runs, else the Kahan-compensated kernel; ``kahan_group_sum`` is that kernel).
- ``max_country_overserved``: the largest per-country mass a distribution puts beyond both a multiple of its
  population share and an authored share (gate 3A-F07); new with that gate, its sums run left to right
  (``run_sums``) so that a scalar loop of its definition (tests/metrics/fidelity_reference.py) gives the same bits.
- ``count_top1_unsupported``: how many countries hold their largest share under a line only by mass beyond what
  their population and the authored share support (gate 3A-F10); its sums run left to right, as the one above.
- ``segment_jsd``: ``jsd`` on many short distributions at once. numpy's ``np.sum`` of fewer than
  8 values is a plain left-to-right loop (from 8 values on, its pairwise kernel sums 8 interleaved
  partial sums as a tree), so a column-by-column running sum over a zero-padded [segments, 7] block
  is the same arithmetic; longer segments go through the scalar ``jsd`` itself.
"""

from __future__ import annotations

import numpy as np

from engine.core.detmath import c_log2

SEQUENTIAL_MAX = 7  # np.sum is a left-to-right loop below 8 values (tests/metrics/test_fidelity_exact.py)


def group_positions(groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(row order grouped by group, rows stable; each row's position within its group)."""
    order = np.argsort(groups, kind="stable")
    sizes = np.bincount(groups, minlength=n_groups)
    starts = np.cumsum(sizes) - sizes
    pos = np.empty(groups.size, dtype=np.int64)
    pos[order] = np.arange(groups.size) - np.repeat(starts, sizes)
    return order, pos


def pandas_group_sum(groups: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """pandas' ``groupby(...).sum()`` of float64 values, bit for bit, given pandas' group ids
    (sorted-key order for ``sort=True``, first appearance for ``sort=False``): pandas 3 sums each
    run with ``np.add.reduceat`` when the ids never decrease in row order and no value is NaN, and
    otherwise with its Cython kernel (NaN skipped, Kahan-compensated, rows in table order)."""
    values = np.asarray(values, dtype=np.float64)
    out = np.zeros(n_groups, dtype=np.float64)
    if groups.size == 0:
        return out
    nan = np.isnan(values)
    if not nan.any() and bool(np.all(groups[1:] >= groups[:-1])):
        starts = np.flatnonzero(np.concatenate(([True], groups[1:] != groups[:-1])))
        out[groups[starts]] = np.add.reduceat(values, starts)
        return out
    ok = ~nan
    return kahan_group_sum(groups[ok], values[ok], n_groups)


def kahan_group_sum(groups: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-group float64 sum exactly as pandas' cython ``group_sum`` (Kahan, rows in table order).

    NaN values must be dropped by the caller (pandas skips them); one vectorised step per row
    position within the groups, so the work is linear in rows."""
    values = np.asarray(values, dtype=np.float64)
    total = np.zeros(n_groups, dtype=np.float64)
    comp = np.zeros(n_groups, dtype=np.float64)
    if groups.size == 0:
        return total
    _, pos = group_positions(groups, n_groups)
    by_pos = np.argsort(pos, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(pos))))
    for j in range(bounds.size - 1):
        rows = by_pos[bounds[j]:bounds[j + 1]]
        g = groups[rows]
        y = values[rows] - comp[g]
        t = total[g] + y
        c = (t - total[g]) - y
        comp[g] = np.where(c != c, 0.0, c)  # an infinite value leaves no NaN compensation (pandas GH#53606)
        total[g] = t
    return total


def jsd(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence of two distributions on one support, base 2 (the reference)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * c_log2(a[mask] / m[mask])))

    return max(0.0, 0.5 * kl(p) + 0.5 * kl(q))


def kahan_run_sum(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``kahan_group_sum`` when each group is one contiguous run of rows starting at ``starts``
    (no NaN): one vectorised step per position within the runs, no per-row index arrays."""
    values = np.asarray(values, dtype=np.float64)
    sizes = np.diff(np.append(starts, values.size))
    total = np.zeros(starts.size, dtype=np.float64)
    comp = np.zeros(starts.size, dtype=np.float64)
    by_size = np.argsort(-sizes, kind="stable")  # runs longest first: the active runs are a prefix
    longest = int(sizes.max(initial=0))
    active = np.searchsorted(-sizes[by_size], -np.arange(1, longest + 1), side="right")
    for j in range(longest):
        g = by_size[:active[j]]
        y = values[starts[g] + j] - comp[g]
        t = total[g] + y
        c = (t - total[g]) - y
        comp[g] = np.where(c != c, 0.0, c)
        total[g] = t
    return total


def _running_sum(block: np.ndarray) -> np.ndarray:
    out = np.zeros(block.shape[0], dtype=np.float64)
    for j in range(block.shape[1]):
        out = out + block[:, j]
    return out


def _kl_rows(a: np.ndarray, m: np.ndarray) -> np.ndarray:
    mask = a > 0
    ratio = np.ones_like(a)
    np.divide(a, m, out=ratio, where=mask)
    terms = np.where(mask, a * c_log2(ratio), 0.0)
    return _running_sum(terms)


def _padded_jsd(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """JSD per row of zero-padded [segments, 7] blocks (the scalar jsd's arithmetic)."""
    p = p / _running_sum(p)[:, None]
    q = q / _running_sum(q)[:, None]
    m = 0.5 * (p + q)
    value = 0.5 * _kl_rows(p, m) + 0.5 * _kl_rows(q, m)
    return np.where(value > 0.0, value, 0.0)  # Python's max(0.0, value)


def segment_jsd(p: np.ndarray, q: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """``jsd(p[s:s+n], q[s:s+n])`` for every segment, bit for bit."""
    out = np.zeros(starts.size, dtype=np.float64)
    short = np.flatnonzero(sizes <= SEQUENTIAL_MAX)
    if short.size:
        col = np.arange(SEQUENTIAL_MAX)
        inside = col[None, :] < sizes[short][:, None]
        idx = np.where(inside, starts[short][:, None] + col[None, :], 0)
        out[short] = _padded_jsd(np.where(inside, p[idx], 0.0), np.where(inside, q[idx], 0.0))
    for i in np.flatnonzero(sizes > SEQUENTIAL_MAX):
        s, n = int(starts[i]), int(sizes[i])
        out[i] = jsd(p[s:s + n], q[s:s + n])
    return out


def mean_country_jsd(country: np.ndarray, p: np.ndarray, q: np.ndarray) -> tuple[float, int, float]:
    """(mean JSD, countries scored, largest JSD) over runs of equal ``country`` (rows grouped by country): each run
    is one country's p and q; a country whose p sums to <= 0 is skipped, as the scalar reference loop skips it."""
    if country.size == 0:
        return 0.0, 0, 0.0
    starts = np.flatnonzero(np.concatenate(([True], country[1:] != country[:-1])))
    sizes = np.diff(np.append(starts, country.size))
    scored = ~(np.add.reduceat(p, starts) <= 0)
    values = segment_jsd(p, q, starts[scored], sizes[scored])
    if not values.size:
        return 0.0, 0, 0.0
    return float(np.mean(values)), int(values.size), float(np.max(values))


def run_sums(values: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Each contiguous run's sum, added left to right (a zero-padded [runs, longest] block summed column by column:
    a plain loop's arithmetic, whatever the run's length, where np.add.reduceat sums 8 values or more pairwise)."""
    if starts.size == 0:
        return np.zeros(0, dtype=np.float64)
    col = np.arange(int(sizes.max()))
    inside = col[None, :] < sizes[:, None]
    block = np.where(inside, np.asarray(values, dtype=np.float64)[np.where(inside, starts[:, None] + col, 0)], 0.0)
    return _running_sum(block)


def _run_shares(country: np.ndarray, p, people) -> tuple:
    """Rows grouped by ``country``: (run starts, run sizes, each run's p mass, each row's p share of its run, each
    row's people share of its run), every sum left to right (:func:`run_sums`)."""
    starts = np.flatnonzero(np.concatenate(([True], country[1:] != country[:-1])))
    sizes = np.diff(np.append(starts, country.size))
    p = np.asarray(p, dtype=np.float64)
    people = np.asarray(people, dtype=np.float64)
    mass = run_sums(p, starts, sizes)
    total = np.repeat(run_sums(people, starts, sizes), sizes)
    share = p / np.repeat(np.where(mass > 0, mass, 1.0), sizes)
    return starts, sizes, mass, share, people / np.where(total > 0, total, 1.0)


def max_country_overserved(country: np.ndarray, p: np.ndarray, people: np.ndarray, authored: np.ndarray,
                           ratio: float) -> float:
    """The largest over runs of equal ``country`` (rows grouped by country) of the run's over-served mass: the part
    of each row's ``p`` (normalised over the run) beyond both ``ratio`` times its ``people``'s share of the run and
    its ``authored`` share (the authoring law's prior: its smoothing and floors are the evidence-faithful part of a
    small clock's prior), summed over the run's rows. A run whose p sums to <= 0 is skipped (as
    ``mean_country_jsd``); 0.0 when none is left. Every sum is a left-to-right loop's, so a scalar loop of the
    definition gives the same bits."""
    if country.size == 0:
        return 0.0
    starts, sizes, mass, share, q = _run_shares(country, p, people)
    allowance = np.maximum(ratio * q, np.asarray(authored, dtype=np.float64))
    values = run_sums(np.maximum(share - allowance, 0.0), starts, sizes)[mass > 0]
    return float(values.max()) if values.size else 0.0


def count_top1_unsupported(country: np.ndarray, p: np.ndarray, people: np.ndarray, authored: np.ndarray,
                           line: float) -> int:
    """How many runs of equal ``country`` (rows grouped by country) keep their largest ``p`` share (normalised over
    the run) under ``line`` only by mass the evidence does not support: with each row's share capped at the larger
    of its ``people``'s share of the run and its ``authored`` share (the authoring law's prior), the capped shares'
    largest over their sum is >= ``line``. The authored prior itself never counts (capping leaves it whole). A run
    whose p sums to <= 0 is skipped. Every sum is a left-to-right loop's, as :func:`max_country_overserved`."""
    if country.size == 0:
        return 0
    starts, sizes, mass, share, q = _run_shares(country, p, people)
    capped = np.minimum(share, np.maximum(q, np.asarray(authored, np.float64)))
    kept = run_sums(capped, starts, sizes)
    top, top_capped = np.maximum.reduceat(share, starts), np.maximum.reduceat(capped, starts)
    supported = top_capped / np.where(kept > 0, kept, 1.0)
    return int(np.count_nonzero((mass > 0) & (top < line) & (kept > 0) & (supported >= line)))
