# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Batch logic of the prediction handler: plain Python and boto3, importable without Chalice."""
