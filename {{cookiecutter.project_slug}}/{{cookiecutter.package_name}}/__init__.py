"""The project's dev-side tooling (local mode, training, the local endpoint); never deployed to Lambda."""
