"""Template machinery for the developer side: local mode, faults, benchmarks, operator commands and deploys."""
