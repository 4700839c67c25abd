"""The team's own tests: the model's, and anything about its own code."""
