"""Segment 3A tuning harness: knobs, studies, objective, sweeps, MLflow trail, promotion, certification."""

from engine import guard_start

guard_start()   # python -m tuning.X: Ctrl-C or SIGTERM while it starts is one coded line, not a traceback
