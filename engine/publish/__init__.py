"""The byte-producing half: S5-S7 bundle, members, serialisation, the run store, atomic writes, verify."""
