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
            if i == 0:
                first = len(counter.calls)
    after = services_cpu() if services_cpu else {}
    seconds.sort()
    # a process's first trial also asks once what the server can do (MLflow 3.18's artifact client: GET
    # server-info); per trial is what every later one costs
    steady = RequestCounter()
    steady.calls = counter.calls[first:] if n > 1 else counter.calls
    later = max(n - 1, 1)
    return {"trials": n, "seconds_median": statistics.median(seconds), "seconds_max": seconds[-1],
            "server_cpu_ms_per_trial": {k: 1000 * (after[k] - before[k]) / n for k in after},
            "requests_per_trial": len(steady.calls) / later, "requests_first_trial": first,
            "requests_by_kind_per_trial": {k: v / later for k, v in sorted(steady.kinds().items())},
            "metrics_per_trial": len(result.metrics()) + len(result.history())}
