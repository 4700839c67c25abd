# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The failure taxonomy: what went wrong with one record, and whether retrying can help.

Permanent failures go to the dead-letter queue at once with their reason; transient ones are
reported to Lambda as batch item failures so SQS delivers the record again, and the queue's
redrive policy moves it to the dead-letter queue after maxReceiveCount deliveries.
"""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

# Error codes for a request that will fail the same way every time (ModelError is handled apart).
_PERMANENT_ENDPOINT_CODES = frozenset({"ValidationError"})


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


def classify_endpoint_error(error: Exception) -> RecordFailure:
    """Turn an InvokeEndpoint exception (after botocore's own retries) into a RecordFailure."""
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code = details.get("Code", "Unknown")
        message = details.get("Message", str(error))
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
