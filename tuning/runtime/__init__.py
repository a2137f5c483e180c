"""``python -m tuning.runtime``: POPT.0 baseline + hotspot map and POPT.1 closure."""
