# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Deploy tooling: the SageMaker endpoint and the pipeline stack; never part of the Lambda package."""
