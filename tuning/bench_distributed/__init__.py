"""``python -m tuning.bench_distributed``: the cost of going distributed."""
