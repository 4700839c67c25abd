# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Template machinery for the developer side: local mode, faults, benchmarks, operator commands and deploys."""
