"""Deploy tooling: the SageMaker endpoint and the pipeline stack; never part of the Lambda package."""
