# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The read API: GET /predictions/{key} answers the latest prediction stored for one key.

Its contract is schemas/predictions-api.openapi.json. Every answer other than 200 has the body
`{"message": "..."}`, the same shape API Gateway uses for the errors it answers itself (403, 429),
so a caller reads every error one way.
"""

from __future__ import annotations

import logging
import os
import time
import unicodedata
from functools import cache
from typing import Any
from urllib.parse import unquote

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from chalice import Blueprint, IAMAuthorizer, Response

from .telemetry import log

# DynamoDB refuses a partition key value above 2048 bytes of UTF-8 (and an empty one).
MAX_KEY_BYTES = 2048
# Throttling that outlasted botocore's retries clears within seconds, so callers retry soon.
RETRY_AFTER_SECONDS = 1

# Who may call it: "iam", callers sign their requests with AWS credentials (SigV4) and API
# Gateway checks the signature and the caller's execute-api:Invoke permission before the function
# runs; or "none", anyone who has the URL.
READ_API_AUTH_CHOICES = ("iam", "none")

logger = logging.getLogger(__name__)


def read_api(auth: str) -> Blueprint:
    """The read API's route, open to those `auth` lets in (see READ_API_AUTH_CHOICES); app.py chooses."""
    if auth not in READ_API_AUTH_CHOICES:
        raise ValueError(f"read API auth {auth!r} is not one of {READ_API_AUTH_CHOICES}")
    blueprint = Blueprint(__name__)
    options = {"authorizer": IAMAuthorizer()} if auth == "iam" else {}
    blueprint.route("/predictions/{key}", methods=["GET"], **options)(get_latest_prediction)
    return blueprint


@cache
def dynamodb_client() -> Any:
    """One client per process, reused by every request the function serves."""
    # Short timeouts and few attempts: a caller waiting on a page is better served by a quick
    # 503 it can retry than by a request that hangs until API Gateway's 29-second limit.
    return boto3.client(
        "dynamodb",
        config=Config(
            connect_timeout=2,
            read_timeout=2,
            retries={"mode": "standard", "total_max_attempts": 3},
        ),
    )


def key_problem(key: str, field: str) -> str | None:
    """Say why DynamoDB could not hold `key` as a partition key value, or None if it can."""
    if not key.strip():
        return f"the {field} is empty or only whitespace"
    size = len(key.encode())
    if size > MAX_KEY_BYTES:
        return f"the {field} is {size} bytes of UTF-8; at most {MAX_KEY_BYTES} are allowed"
    control = next((character for character in key if unicodedata.category(character) == "Cc"), None)
    if control is not None:
        return f"the {field} holds the control character U+{ord(control):04X}"
    return None


def _expired(item: dict[str, Any]) -> bool:
    """True once the item's TTL has passed: DynamoDB deletes expired items lazily, days later."""
    expires_at = item.get("expires_at")
    return expires_at is not None and float(expires_at["N"]) <= time.time()


def _message(status_code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        body={"message": message},
        status_code=status_code,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def get_latest_prediction(key: str) -> Response:
    """Answer the envelope stored for `key` exactly as it was published, or say why there is none."""
    # Read at call time: the Chalice test client swaps os.environ for a patched copy.
    table_name = os.environ["PREDICTIONS_TABLE_NAME"]
    field = os.environ["PARTITION_KEY_FIELD"]
    # Chalice hands the path segment over as the caller encoded it (aws/chalice#511).
    try:
        key = unquote(key, errors="strict")
    except UnicodeDecodeError:
        return _message(400, f"the {field} is not percent-encoded UTF-8")
    problem = key_problem(key, field)
    if problem is not None:
        return _message(400, problem)
    try:
        item = dynamodb_client().get_item(TableName=table_name, Key={field: {"S": key}}).get("Item")
    except (ClientError, BotoCoreError) as error:
        code = error.response.get("Error", {}).get("Code") if isinstance(error, ClientError) else type(error).__name__
        log(logger, logging.WARNING, "prediction_read_failed", table=table_name, error=code)
        return _message(
            503,
            f"the predictions table could not be read just now; retry in {RETRY_AFTER_SECONDS} second",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    if item is None or _expired(item):
        return _message(404, f"no prediction for {field} '{key}'", {"Cache-Control": "no-cache"})
    # A newer prediction may replace this one at any moment, so caches must ask again each time.
    return Response(
        body=item["envelope"]["S"],
        status_code=200,
        headers={"Content-Type": "application/json", "Cache-Control": "no-cache"},
    )
