"""``python -m tuning.bench``: the harness against a hand-written Optuna + MLflowCallback peer (peer)."""
