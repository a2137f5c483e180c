"""The world a run stands on: zone universe Z(c), population mass, and the outlet catalogue."""
