"""Suite-wide: the summary names, once each, what was absent here and how many tests it skipped."""

from __future__ import annotations

import os
import sys
from collections import Counter

from tests.environment import ABSENT
from tuning.trail.environment import prepare_for_mlflow


def pytest_configure(config) -> None:
    prepare_for_mlflow()   # the suite's own process imports MLflow too (tuning.trail.environment)
    # The suite starts some 300 interpreters (every program test, trail process and worker): with bytecode caching
    # off (PYTHONDONTWRITEBYTECODE, set in some shells) each compiles every module it imports from source, and each
    # xdist worker rewrites every test module's asserts again. Python's default for the session and its children.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False


def _reason(report) -> str:
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ")


def pytest_terminal_summary(terminalreporter) -> None:
    absent = Counter(r for r in map(_reason, terminalreporter.stats.get("skipped", [])) if r.startswith(ABSENT))
    for reason, n in sorted(absent.items()):
        terminalreporter.write_line(f"{n} test{'s' if n > 1 else ''} skipped, {reason}", yellow=True)
