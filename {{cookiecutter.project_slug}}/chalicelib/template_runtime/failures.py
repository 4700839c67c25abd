# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The failure taxonomy: what went wrong with one record, and whether retrying can help.

Permanent failures go to the dead-letter queue at once with their reason; transient ones are
reported to Lambda as batch item failures so the source delivers the record again, until its
last delivery, when the handler dead-letters it with its reason (batch.last_delivery).

The same taxonomy holds on the way out: a destination (or the dead-letter queue) that refuses a
message says whether sending it again could ever succeed (`classify_sink_error`,
`batch_entry_failure`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

# Error codes for a request that will fail the same way every time (ModelError is handled apart).
_PERMANENT_ENDPOINT_CODES = frozenset({"ValidationError"})
# What a sink's service answers when the message itself is invalid: sent again, it is refused
# again, so a retry would only hold the record (and, from an ordered source, its group) back.
_PERMANENT_SINK_CODES = frozenset(
    {
        # DynamoDB and Kinesis: a key over its limit, an item or record too large, a key of the wrong type.
        "ValidationException",
        "InvalidArgumentException",
        # SQS: characters outside its allowed set; a parameter value it refuses.
        "InvalidMessageContents",
        "InvalidParameterValue",
        # SNS (InvalidParameterException, InvalidParameterValueException).
        "InvalidParameter",
        "ParameterValueInvalid",
        # SQS and SNS: a message larger than the service takes (it travels alone, see publishing.plan_batches).
        "MessageTooLong",
        "BatchRequestTooLong",
    }
)
# SQS's JSON protocol names some errors with this prefix (AWS.SimpleQueueService.BatchRequestTooLong).
_SQS_CODE_PREFIX = "AWS.SimpleQueueService."
# Refusals a batch entry reports as the sender's fault, but that a change of configuration or of
# load cures (a key policy, a permission, throttling): retried, not dead-lettered.
_CURABLE_SENDER_FAULT = re.compile(r"^(KMS|Kms)|Throttl|AccessDenied|Authorization|Security|NotFound|NonExistent")


@dataclass(frozen=True)
class RecordFailure:
    """Why one record produced no prediction."""

    code: str
    reason: str
    permanent: bool

    @classmethod
    def permanent_failure(cls, code: str, reason: str) -> RecordFailure:
        return cls(code=code, reason=reason, permanent=True)

    @classmethod
    def transient_failure(cls, code: str, reason: str) -> RecordFailure:
        return cls(code=code, reason=reason, permanent=False)


# The code of a record whose endpoint does not exist; the handler counts them in a metric of the
# same name, which the stack alarms on.
ENDPOINT_NOT_FOUND = "EndpointNotFound"
# How InvokeEndpoint says the endpoint does not exist: ValidationError "Endpoint <name> of account
# <id> not found." (a wrong ENDPOINT_NAME, a stack deployed before its endpoint, an endpoint being
# re-created).
_ENDPOINT_NOT_FOUND_MESSAGE = re.compile(r"^Endpoint \S+ of account \S+ not found")


def classify_endpoint_error(error: Exception) -> RecordFailure:
    """Turn an InvokeEndpoint exception (after botocore's own retries) into a RecordFailure."""
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code = details.get("Code", "Unknown")
        message = details.get("Message", str(error))
        if code == "ValidationError" and _ENDPOINT_NOT_FOUND_MESSAGE.match(message):
            # An outage, not a bad record: every record of the batch would fail alike, so all are
            # retried rather than dead-lettered, and the metric's alarm calls an operator.
            return RecordFailure.transient_failure(ENDPOINT_NOT_FOUND, message)
        if code == "ModelError":
            # The container answered with an error of its own. Framework containers report a
            # record they refuse as 500 as often as 400, so the status cannot tell a bad record
            # from a sick container: the record goes to the dead-letter queue with the model's
            # message, and a dead-letter redrive sends it back once the model is fixed.
            original = error.response.get("OriginalStatusCode")
            original_message = error.response.get("OriginalMessage") or message
            return RecordFailure.permanent_failure(code, f"model answered {original}: {original_message}")
        if code in _PERMANENT_ENDPOINT_CODES:
            return RecordFailure.permanent_failure(code, message)
        return RecordFailure.transient_failure(code, message)
    if isinstance(error, BotoCoreError):
        return RecordFailure.transient_failure(type(error).__name__, str(error))
    raise error


def classify_sink_error(operation: str, error: Exception) -> RecordFailure:
    """Turn the exception of a publishing call (after botocore's retries) into the failure of each message it held.

    Only the request's own content makes it permanent: a missing queue, a denied permission or a
    throttled call is cured by fixing or waiting, so those are retried.
    """
    reason = f"{operation} failed: {error}"
    if isinstance(error, ParamValidationError):
        # botocore refused the parameters before sending them: they will not change.
        return RecordFailure.permanent_failure("ParamValidationError", reason)
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "Unknown").removeprefix(_SQS_CODE_PREFIX)
        return RecordFailure(code=code, reason=reason, permanent=code in _PERMANENT_SINK_CODES)
    if isinstance(error, BotoCoreError):
        return RecordFailure.transient_failure(type(error).__name__, reason)
    raise error


def batch_entry_failure(entry: dict) -> RecordFailure:
    """The failure of one entry a SendMessageBatch or PublishBatch answer lists as Failed.

    AWS marks with SenderFault an entry refused for what the request holds (characters SQS does
    not take, a parameter out of range): sent again it is refused again.
    """
    code = str(entry.get("Code") or "Failed").removeprefix(_SQS_CODE_PREFIX)
    reason = f"{code}: {entry.get('Message', '')}".strip()
    permanent = bool(entry.get("SenderFault")) and not _CURABLE_SENDER_FAULT.search(code)
    return RecordFailure(code=code, reason=reason, permanent=permanent)
