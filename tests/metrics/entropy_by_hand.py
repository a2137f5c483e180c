"""Entropy and the Jensen-Shannon divergence by their textbook forms, independent of the engine's code."""

from __future__ import annotations

import math


def H(*p: float) -> float:
    """Shannon entropy, base 2."""
    return -sum(x * math.log2(x) for x in p if x > 0)


def JSD(p, q) -> float:
    """JSD by its entropy form: H((p+q)/2) - (H(p) + H(q)) / 2 (the code uses the KL form)."""
    m = [(a + b) / 2 for a, b in zip(p, q)]
    return H(*m) - (H(*p) + H(*q)) / 2
