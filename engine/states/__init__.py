"""States S0..S7 as pure functions: tables + policy documents + seed in, tables and dicts out."""
