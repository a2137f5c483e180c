"""``python -m tuning.baseline``: the P0 metric pack of one policy set on one seed."""
