"""The engine's version (sealed into every manifest fingerprint)."""

ENGINE_VERSION = "1.0.0"
