# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Injects sink failures into real boto3 clients through botocore's event system.

Every injector takes `events`: a client's `meta.events`, or a session's `events` to reach clients
the session creates later (such as the handler's own): botocore copies a session's handlers into
each client when it creates it, so register before the client exists.

Publishers send batches from several threads at once; each call runs on one thread from
parameter building to its answer, so what an injector decided about a call is kept per thread.

An injector's decision is False (let it through), True (a server-side failure a retry may cure:
InternalError and the like), or a Refusal saying how the sink refuses it: a failed entry with
`SenderFault: true`, or a call answered with a 400 such as DynamoDB's ValidationException, is
the caller's fault, and no retry will ever get it accepted (PERMANENT_REFUSALS).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.awsrequest import AWSResponse

from chalicelib.template_runtime.aws_limits import SQS_REFUSED_CHARACTER

INJECTED = "injected"


@dataclass(frozen=True)
class Refusal:
    """How a sink refuses an entry or a call: its error code, and whether the sender is at fault."""

    code: str
    # True: the request itself is wrong (SenderFault, a 4xx), so it fails every time it is sent.
    sender_fault: bool = False
    message: str = INJECTED


# What each publishing call answers for an entry or a call it will never accept, as the service
# does: SQS and SNS fail the batch entry with SenderFault true, DynamoDB fails the call with a
# 400 ValidationException (a key over 2,048 bytes, for one). Kinesis has none: PutRecords reports
# only throttling and internal failures per record, and refuses a record it can never take (too
# large, a bad key) by failing the whole call, which the handler's checks keep from happening.
PERMANENT_REFUSALS: dict[str, Refusal] = {
    "sqs.SendMessageBatch": Refusal("InvalidParameterValue", sender_fault=True),
    "sns.PublishBatch": Refusal("InvalidParameter", sender_fault=True),
    "dynamodb.PutItem": Refusal("ValidationException", sender_fault=True),
}


def permanent_refusal(operation: str) -> Refusal | None:
    """How `operation` ("<service>.<Operation>") refuses for good what it will never accept; None
    when it reports no such refusal for one entry alone."""
    return PERMANENT_REFUSALS.get(operation)


def _refusal(decision: bool | Refusal | None, default_code: str) -> Refusal | None:
    """An injector's decision as a Refusal (True: a server-side `default_code`), or None to let it through."""
    if isinstance(decision, Refusal):
        return decision
    return Refusal(default_code) if decision else None


@dataclass(frozen=True)
class BatchApi:
    """How one batch API takes its entries and reports those it did not accept."""

    # "<service>.<Operation>", as in botocore's event names.
    operation: str
    # The request parameter that holds the entries.
    entries: str
    # Puts the refused entries, each with its position in the request and how it is refused, into
    # the parsed answer, the way the service reports a partial failure; also given the request's
    # entry count.
    report: Callable[[dict, list[tuple[int, dict, Refusal]], int], None]
    # The answer to a call every entry of which is refused (then nothing is sent at all).
    empty_answer: Callable[[], dict]
    # The code of a server-side failure of one entry (an injector's True).
    transient_code: str = "InternalError"


def _report_failed_entries(parsed: dict, refused: list[tuple[int, dict, Refusal]], _: int) -> None:
    parsed.setdefault("Failed", []).extend(
        {"Id": entry["Id"], "SenderFault": refusal.sender_fault, "Code": refusal.code, "Message": refusal.message}
        for _, entry, refusal in refused
    )


def _report_failed_records(parsed: dict, refused: list[tuple[int, dict, Refusal]], total: int) -> None:
    # PutRecords answers one result per request record, in order, so the refused ones go back
    # in at their positions.
    refusals = {position: refusal for position, _, refusal in refused}
    accepted = iter(parsed.get("Records", []))
    parsed["Records"] = [
        {"ErrorCode": refusals[position].code, "ErrorMessage": refusals[position].message}
        if position in refusals
        else next(accepted)
        for position in range(total)
    ]
    parsed["FailedRecordCount"] = parsed.get("FailedRecordCount", 0) + len(refused)


SQS_SEND_MESSAGE_BATCH = BatchApi(
    "sqs.SendMessageBatch", "Entries", _report_failed_entries, lambda: {"Successful": [], "Failed": []}
)
SNS_PUBLISH_BATCH = BatchApi(
    "sns.PublishBatch", "PublishBatchRequestEntries", _report_failed_entries, lambda: {"Successful": [], "Failed": []}
)
KINESIS_PUT_RECORDS = BatchApi(
    "kinesis.PutRecords",
    "Records",
    _report_failed_records,
    lambda: {"FailedRecordCount": 0, "Records": []},
    "InternalFailure",
)


@contextmanager
def refuse_batch_entries(events: Any, api: BatchApi, refuse: Callable[[dict], bool | Refusal | None]) -> Iterator[None]:
    """Make a batch API refuse the entries `refuse` picks, the way the service reports it.

    `refuse` gets each request entry as botocore takes it, once per entry and attempt, so it may
    count attempts. The refused entries are taken out of the real request, so they are never
    sent, and put back into the answer as failed: with a server-side error when `refuse` says
    True, or as the Refusal it returns says (see PERMANENT_REFUSALS).
    """
    call = threading.local()

    def drop_entries(params: dict, **_: Any) -> None:
        entries = params[api.entries]
        call.total = len(entries)
        decisions = (
            (position, entry, _refusal(refuse(entry), api.transient_code)) for position, entry in enumerate(entries)
        )
        call.refused = [(position, entry, refusal) for position, entry, refusal in decisions if refusal is not None]
        # A request with no entries left is invalid; such a call is answered without sending it.
        call.all_refused = bool(entries) and len(call.refused) == len(entries)
        if not call.all_refused:
            refused_positions = {position for position, _, _ in call.refused}
            params[api.entries] = [entry for position, entry in enumerate(entries) if position not in refused_positions]

    def answer_all_refused(**_: Any) -> tuple[AWSResponse, dict] | None:
        if not getattr(call, "all_refused", False):
            return None
        return AWSResponse(url="", status_code=200, headers={}, raw=None), api.empty_answer()

    def report_refused(parsed: dict, **_: Any) -> None:
        api.report(parsed, getattr(call, "refused", []), getattr(call, "total", 0))
        call.refused, call.all_refused = [], False

    handlers = (
        (f"provide-client-params.{api.operation}", drop_entries),
        (f"before-call.{api.operation}", answer_all_refused),
        (f"after-call.{api.operation}", report_refused),
    )
    for event_name, handler in handlers:
        events.register(event_name, handler)
    try:
        yield
    finally:
        for event_name, handler in handlers:
            events.unregister(event_name, handler)


def refuse_send_entries(events: Any, refuse: Callable[[dict], bool | Refusal | None]) -> AbstractContextManager[None]:
    """Make SendMessageBatch refuse the entries `refuse` picks (it gets each entry: Id, MessageBody, ...)."""
    return refuse_batch_entries(events, SQS_SEND_MESSAGE_BATCH, refuse)


@contextmanager
def fail_calls(
    events: Any, operation: str, fail: Callable[[dict], bool | Refusal | None], error_code: str = "InternalError"
) -> Iterator[None]:
    """Make the calls of `operation` ("<service>.<Operation>") that `fail` picks fail whole.

    `fail` gets the call's parameters, once per attempt, and says True (a 500 with `error_code`)
    or how the call is refused (a Refusal: a 400 when the sender is at fault). A failed call
    never reaches the service: the error is answered in its place, without botocore's retries.
    """
    call = threading.local()

    def judge(params: dict, **_: Any) -> None:
        call.refusal = _refusal(fail(params), error_code)

    def answer_failed(**_: Any) -> tuple[AWSResponse, dict] | None:
        refusal = getattr(call, "refusal", None)
        if refusal is None:
            return None
        call.refusal = None
        status = 400 if refusal.sender_fault else 500
        parsed = {
            "Error": {
                "Code": refusal.code,
                "Message": refusal.message,
                "Type": "Sender" if refusal.sender_fault else "Receiver",
            },
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        return AWSResponse(url="", status_code=status, headers={}, raw=None), parsed

    events.register(f"provide-client-params.{operation}", judge)
    events.register(f"before-call.{operation}", answer_failed)
    try:
        yield
    finally:
        events.unregister(f"provide-client-params.{operation}", judge)
        events.unregister(f"before-call.{operation}", answer_failed)


def enforce_sqs_characters(events: Any) -> AbstractContextManager[None]:
    """Make SendMessageBatch refuse each entry SQS itself would (moto takes any text).

    SQS refuses a body or String attribute value holding a character outside #x9 | #xA | #xD |
    #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF (aws_limits.SQS_REFUSED_CHARACTER): the entry
    fails with InvalidMessageContents, the sender's fault. It refuses an empty body too ("The
    minimum size is one character"), the sender's fault as well.
    """
    refusal = Refusal("InvalidMessageContents", sender_fault=True)

    def refuses(entry: dict) -> Refusal | None:
        if not entry["MessageBody"]:
            return Refusal("InvalidParameterValue", sender_fault=True)
        texts = [entry["MessageBody"]]
        texts += [value.get("StringValue", "") for value in entry.get("MessageAttributes", {}).values()]
        return refusal if any(SQS_REFUSED_CHARACTER.search(text) for text in texts) else None

    return refuse_batch_entries(events, SQS_SEND_MESSAGE_BATCH, refuses)
