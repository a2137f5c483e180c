"""A harness process's start-up heap, out of the cyclic collector's way once start-up is over.

A sweep process imports Optuna, SQLAlchemy, pandas, pyarrow, SciPy and the engine, and reads its world; its
MLflow trail process imports MLflow and its SQL store. Those objects live as long as the process, and Python's
collector traverses every one of them at each full collection: in a 40-trial P1.2 sweep of the default world
(journal + sqlite) the trail process spent 0.40-0.52 CPU s of its ~7 in 6-8 full collections, the sweep process
0.08-0.21 s of its ~6.5 in 3-4, most of them during or after the imports. :func:`gc.freeze` (Python's own mechanism for
a process's long-lived start-up objects) moves everything allocated so far to the permanent generation: later
collections traverse only what the trials allocate, and cycles made later are collected as before.
"""

from __future__ import annotations

import gc


def settle_startup_heap() -> int:
    """Freeze what this process has allocated so far (its imports, its world, its anchor); returns how many
    objects the collector no longer traverses."""
    gc.freeze()
    return gc.get_freeze_count()
