"""The engine's ground floor: coded errors, hashing laws, keyed RNG, gamma, strict readers, version."""
