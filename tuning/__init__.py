"""Segment 3A tuning harness: knobs, studies, objective, sweeps, MLflow trail, promotion, certification."""
