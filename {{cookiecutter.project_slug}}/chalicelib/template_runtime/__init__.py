"""Batch logic of the prediction handler: plain Python and boto3, importable without Chalice."""
