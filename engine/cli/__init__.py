"""``python -m engine run|verify|author|bench`` (main), its bench (bench) and the one CLI wrapper (wrap)."""
