# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""AWS's naming rules for what the deploy scripts create, checked again at run time, and ARN spelling.

The template's hooks check the answers once, but they can be skipped (`--accept-hooks no`) and
the files edited later, so every deploy command checks the names it is about to use.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

# SageMaker's pattern for EndpointName, EndpointConfigName and ModelName.
SAGEMAKER_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
SAGEMAKER_NAME_LIMIT = 63
QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
QUEUE_NAME_LIMIT = 80
# A FIFO queue's name ends in .fifo, and the 80 characters include the suffix.
FIFO_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,75}\.fifo")
FIFO_SUFFIX = ".fifo"
STREAM_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d")
# S3's rules for new general purpose buckets (no dots: they break TLS on virtual-hosted URLs).
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
KEY_PREFIX = re.compile(r"[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*")
S3_URI = re.compile(r"s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>\S+)")
ECR_IMAGE_URI = re.compile(
    r"(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?/"
    r"(?P<repository>[a-z0-9._/-]+)(:[\w.-]+|@sha256:[0-9a-f]{64})"
)
ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")
TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]{1,256}")
INSTANCE_TYPE = re.compile(r"ml\.[a-z0-9]+\.[a-z0-9]+")
STACK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,127}")
IAM_ROLE_NAME_LIMIT = 64
# An ARN in the stack's own account and region, for CloudFormation's Fn::Sub; %s is the service.
# Written without an f-string: CloudFormation's ${...} would need doubled braces there.
STACK_ARN_PREFIX = "arn:${AWS::Partition}:%s:${AWS::Region}:${AWS::AccountId}:"
# A UTC second suffixes each model and endpoint config, so every deploy gets fresh names.
VERSION_SUFFIX_FORMAT = "%Y%m%d-%H%M%S"
VERSION_SUFFIX_LENGTH = len("-20261125-105800")
# A name too long for its limit is cut and ends with this many hex digits of a hash of the whole
# name: stages' names differ only at their end (`-dev`), so a plain cut would give two stages one name.
NAME_HASH_LENGTH = 8


def sagemaker_name_problem(name: str) -> str | None:
    """Say why a name cannot be a SageMaker endpoint or model name, or None if it can."""
    if not SAGEMAKER_NAME.fullmatch(name):
        return (
            f"{name!r} is not a SageMaker name: letters, digits and hyphens, starting and ending "
            "with a letter or digit, at most 63 characters"
        )
    return None


def queue_name_problem(name: str) -> str | None:
    """Say why a name cannot be an SQS queue name (standard, or FIFO ending .fifo), or None if it can."""
    if name.endswith(FIFO_SUFFIX):
        if not FIFO_QUEUE_NAME.fullmatch(name):
            return f"{name!r} is not an SQS FIFO queue name: 1-75 letters, digits, hyphens and underscores, then .fifo"
    elif not QUEUE_NAME.fullmatch(name):
        return f"{name!r} is not an SQS queue name: 1-80 letters, digits, hyphens and underscores"
    return None


def stream_name_problem(name: str) -> str | None:
    """Say why a name cannot be a Kinesis data stream name, or None if it can."""
    if not STREAM_NAME.fullmatch(name):
        return f"{name!r} is not a Kinesis stream name: 1-128 letters, digits, hyphens, underscores and dots"
    return None


def bounded_name(name: str, limit: int) -> str:
    """The name as it is if it fits the limit; else cut, then a hash of the whole name.

    Two names that differ anywhere stay different, and a name that fits keeps its spelling, so
    the roles and models deployed before this rule keep theirs.
    """
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:NAME_HASH_LENGTH]
    return f"{name[: limit - NAME_HASH_LENGTH - 1].rstrip('-')}-{digest}"


def versioned_name(endpoint_name: str, now: datetime | None = None) -> str:
    """Name a new model and endpoint config after the endpoint, unique to the second and to the stage."""
    stamp = (now or datetime.now(UTC)).strftime(VERSION_SUFFIX_FORMAT)
    return f"{bounded_name(endpoint_name, SAGEMAKER_NAME_LIMIT - VERSION_SUFFIX_LENGTH)}-{stamp}"


def execution_role_name(endpoint_name: str) -> str:
    """Name the IAM role SageMaker runs the endpoint's container with: one role per endpoint, so per stage."""
    return bounded_name(f"sagemaker-{endpoint_name}", IAM_ROLE_NAME_LIMIT)


def endpoint_arn_name(endpoint_name: str) -> str:
    """SageMaker lowercases names in ARNs, and IAM compares resource ARNs case-sensitively."""
    return endpoint_name.lower()
