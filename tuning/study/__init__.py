"""A study and its trials: spec, knobs, objective, seed-robust aggregation, trial record, ranking, Pareto front."""
