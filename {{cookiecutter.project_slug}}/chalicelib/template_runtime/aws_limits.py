# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""AWS's documented limits that the pipeline sizes its calls by, each named once.

The handler, the deploy checks and local mode take them from here, so a limit AWS changes is
changed in one place. Each comment names the API whose reference documents the limit.
"""

import re

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

# The keys a destination files a prediction under. The handler checks a record's key against
# them when it reads the record (batch.py), so a key the destination would refuse on every
# attempt is dead-lettered with the reason instead of being retried, holding its group back.
#
# DynamoDB: a partition key value is 1 to 2,048 bytes (of UTF-8 for a string). Developer Guide,
# "Constraints in Amazon DynamoDB", Partition keys and sort keys:
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Constraints.html
DYNAMODB_MAX_PARTITION_KEY_BYTES = 2048
# Kinesis PutRecords: "Partition keys are Unicode strings with a maximum length limit of 256
# characters" (API reference, PutRecordsRequestEntry):
# https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecordsRequestEntry.html
KINESIS_MAX_PARTITION_KEY_CHARS = 256
# SQS FIFO: a MessageGroupId (and a MessageDeduplicationId) is at most 128 characters, each a
# letter, a digit or punctuation. Developer Guide, "Amazon SQS message quotas":
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html
SQS_MAX_GROUP_ID_CHARS = 128
SQS_GROUP_ID = re.compile(r"[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]+")
# SQS takes only these characters in a message body and in a String attribute's value, and
# refuses a message with any other (InvalidMessageContents): #x9 | #xA | #xD | #x20 to #xD7FF |
# #xE000 to #xFFFD | #x10000 to #x10FFFF (the same quotas page, "Message content"; SendMessage's
# API reference). A Kinesis record's data may hold others, "\x01" for one.
SQS_REFUSED_CHARACTER = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
