"""The ranges a sweep's configuration and a study file share (no imports: the sweep CLI checks its
arguments before the engine, Optuna or MLflow load)."""

from pathlib import Path

UINT64_MAX = 2 ** 64 - 1
MAX_TRIALS = 1_000_000
MAX_SEEDS = 10_000   # held-out, validation or certification seeds (and a step's repeats): each one is a chain
STUDY_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"  # a file name under .optuna/, never a path
OPTUNA_DIR = Path(".optuna")


def seedpack_missing(seeds) -> list[int]:
    """The plan's seedpack seeds (``engine.REQUIRED_SEEDS``) not among ``seeds`` (integers or their text): a
    certification of fewer does not measure the seedpack's cross-seed spread (3A-X01), which its grade reads."""
    from engine import REQUIRED_SEEDS

    have = {str(s).strip() for s in seeds}
    return [s for s in REQUIRED_SEEDS if str(s) not in have]
