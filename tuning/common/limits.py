"""The ranges a sweep's configuration and a study file share (no imports: the sweep CLI checks its
arguments before the engine, Optuna or MLflow load)."""

from pathlib import Path

UINT64_MAX = 2 ** 64 - 1
MAX_TRIALS = 1_000_000
MAX_SEEDS = 10_000   # held-out, validation or certification seeds (and a step's repeats): each one is a chain
STUDY_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"  # a file name under .optuna/, never a path
OPTUNA_DIR = Path(".optuna")
