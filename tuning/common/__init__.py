"""What every harness package shares: coded errors and the CLI wrapper, limits, the world a command runs on."""
