# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""AWS's documented limits that the pipeline sizes its calls by, each named once.

The handler, the deploy checks and local mode take them from here, so a limit AWS changes is
changed in one place. Each comment names the API whose reference documents the limit.
"""

# SQS SendMessageBatch, DeleteMessageBatch and ChangeMessageVisibilityBatch take at most 10
# entries; ReceiveMessage returns at most 10 messages.
SQS_MAX_BATCH_ENTRIES = 10
# SQS: one message, and one SendMessageBatch in all, at most 1 MiB, message attributes included
# (raised from 256 KiB in August 2025).
SQS_MAX_BATCH_BYTES = 1_048_576
# SNS PublishBatch takes at most 10 entries.
SNS_MAX_BATCH_ENTRIES = 10
# Lambda reads at most 10 records per batch from an SQS FIFO queue.
LAMBDA_FIFO_MAX_BATCH_SIZE = 10
# SageMaker InvokeEndpoint refuses request bodies above 6,291,456 bytes on real-time endpoints
# (4 MB on serverless ones).
INVOKE_ENDPOINT_MAX_REQUEST_BYTES = 6_291_456
