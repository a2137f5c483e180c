"""``python -m tuning.sweep``: config, coordinator, trial loop and workers, close."""
