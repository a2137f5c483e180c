"""The logging probe of ``python -m tuning.bench_distributed``: real trial records logged one after another
through a tracking server, as a trail process logs them, with the HTTP requests each one costs."""

from __future__ import annotations

import os
import statistics
import time


class RequestCounter:
    """Counts the HTTP requests MLflow's client sends from this process (``requests.Session.request``)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __enter__(self) -> "RequestCounter":
        import requests

        self._original = original = requests.Session.request
        calls = self.calls

        def request(session, method, url, *args, **kwargs):
            calls.append((method.upper(), url.split("/api/2.0/", 1)[-1].split("?", 1)[0]))
            return original(session, method, url, *args, **kwargs)

        requests.Session.request = request
        return self

    def __exit__(self, *exc) -> None:
        import requests

        requests.Session.request = self._original

    def kinds(self) -> dict[str, int]:
        """Requests by kind (``PUT mlflow-artifacts`` for every artifact upload)."""
        out: dict[str, int] = {}
        for method, path in self.calls:
            key = f"{method} {path if path.startswith('mlflow/') else path.split('/', 1)[0]}"
            out[key] = out.get(key, 0) + 1
        return out


def log_probe(tracking_uri: str, phase: str, n: int, services_cpu=None) -> dict:
    """Log ``n`` real trial records one after another through the tracking server (as a trail process does):
    seconds per trial, HTTP requests per trial and (``services_cpu()``: the servers' CPU seconds by name) the
    servers' CPU milliseconds per trial."""
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    from engine import PolicySet
    from tuning.study.objective import SeedRobustObjective
    from tuning.study.spec import load_study
    from tuning.trail.tracking import SweepTracker
    from tuning.study.trial_result import PolicyFiles, TrialResult

    spec = load_study(phase)
    ev = SeedRobustObjective(spec, spec.seeds, PolicySet.from_dir(spec.base_policies)).evaluate(
        {k.name: k.value if k.fixed else (k.choices[0] if k.choices else k.low) for k in spec.knobs})
    result = TrialResult.from_evaluation(ev, spec.phase, spec.objective_name)
    tracker = SweepTracker(spec.phase, f"bench-probe-{int(time.time())}", spec.objective_name)
    tracker.start_parent({}, {}, close_dead=False)
    seconds = []
    before = services_cpu() if services_cpu else {}
    with RequestCounter() as counter:
        for i in range(n):
            t0 = time.perf_counter()
            tracker.log_trial(i, i, result, PolicyFiles.of(ev.policies), dict(ev.knobs))
            seconds.append(time.perf_counter() - t0)
    after = services_cpu() if services_cpu else {}
    seconds.sort()
    return {"trials": n, "seconds_median": statistics.median(seconds), "seconds_max": seconds[-1],
            "server_cpu_ms_per_trial": {k: 1000 * (after[k] - before[k]) / n for k in after},
            "requests_per_trial": len(counter.calls) / n,
            "requests_by_kind_per_trial": {k: v / n for k, v in sorted(counter.kinds().items())},
            "metrics_per_trial": len(result.metrics()) + len(result.history())}
