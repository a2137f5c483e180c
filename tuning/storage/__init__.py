"""Optuna storage: stores, the journal file, sampler streams, the shared budget, stale-trial recovery."""
