"""Tests of engine.metrics and the tuning report CLIs."""
