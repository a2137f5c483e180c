"""The chain: the state table (table), its steps (steps), the runner with its content-keyed cache (runner),
the result (result) and the optional Dask mapper (cluster)."""
