"""The trade-off of a multi-objective study: J (up) against a second objective (fidelity), pure.

``front``: the non-dominated points among feasible trials; ``FrontTracker``: the same front kept
incrementally. Their MLflow side (the ``pareto`` tags and the parent run's ``pareto.html``) is
:mod:`tuning.trail.pareto_tags`.
"""

from __future__ import annotations

from typing import Iterable


def _better_or_equal(a: float, b: float, direction: str) -> bool:
    return a <= b if direction == "minimize" else a >= b


def front(points: Iterable[tuple[int, float, float]], second_direction: str) -> list[int]:
    """Numbers of the non-dominated points ``(number, J, second)``: no other point is at least as
    good on both objectives and strictly better on one. Ties (equal on both) all stay on the front."""
    pts = list(points)
    keep = []
    for n, j, f in pts:
        dominated = any(dominates((j2, f2), (j, f), second_direction) for _, j2, f2 in pts)
        if not dominated:
            keep.append(n)
    return sorted(keep)


def dominates(a: tuple[float, float], b: tuple[float, float], second_direction: str) -> bool:
    """(J, second) ``a`` is at least as good as ``b`` on both objectives and strictly better on one."""
    return a[0] >= b[0] and _better_or_equal(a[1], b[1], second_direction) and (a[0] > b[0] or a[1] != b[1])


class FrontTracker:
    """The front of the points added so far, kept incrementally: a new point joins unless a front point
    dominates it, and drops the front points it dominates (dominance is transitive, so a point off the
    front is dominated by one on it: the result equals :func:`front` over every point added)."""

    def __init__(self, second_direction: str) -> None:
        self.direction = second_direction
        self.points: dict[str, tuple[float, float]] = {}

    def admits(self, j: float, second: float) -> bool:
        """Would this point join the front (no front point dominates it)?"""
        return not any(dominates(q, (j, second), self.direction) for q in self.points.values())

    def add(self, key: str, j: float, second: float) -> tuple[set[str], set[str]]:
        """Add a point; returns (keys that joined the front, keys that left it)."""
        p = (j, second)
        if not self.admits(j, second):
            return set(), set()
        left = {k for k, q in self.points.items() if dominates(p, q, self.direction)}
        for k in left:
            del self.points[k]
        self.points[key] = p
        return {key}, left
