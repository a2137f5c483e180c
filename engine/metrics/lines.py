"""Lines in the metric definitions that more than one section reads.

``TOP1_GE``: a country's S2 prior is collapsed when its top zone holds at least this share (the plan's
``share_top1_ge_099_multi_tz``, gates 3A-V02/S02, in ``engine.metrics.pack``); fidelity's gate 3A-F10 counts the
countries that are under it only by mass their evidence does not support (``engine.metrics.fidelity``).
"""

TOP1_GE = 0.99
