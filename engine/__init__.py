"""Segment 3A zone-allocation engine: states S0..S7 over an embedded world.

The engine knows nothing of Optuna or MLflow. Each state is a pure function of its
inputs; files are read and written only by :mod:`engine.store`.
"""

from engine.version import ENGINE_VERSION

__all__ = ["ENGINE_VERSION"]
