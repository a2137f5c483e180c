"""Suite-wide: the summary names, once each, what was absent here and how many tests it skipped."""

from __future__ import annotations

from collections import Counter

from tests.environment import ABSENT
from tuning.trail.environment import prepare_for_mlflow


def pytest_configure(config) -> None:
    prepare_for_mlflow()   # the suite's own process imports MLflow too (tuning.trail.environment)


def _reason(report) -> str:
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ")


def pytest_terminal_summary(terminalreporter) -> None:
    absent = Counter(r for r in map(_reason, terminalreporter.stats.get("skipped", [])) if r.startswith(ABSENT))
    for reason, n in sorted(absent.items()):
        terminalreporter.write_line(f"{n} test{'s' if n > 1 else ''} skipped, {reason}", yellow=True)
