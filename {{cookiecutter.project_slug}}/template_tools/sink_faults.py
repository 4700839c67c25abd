# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Injects sink failures into real boto3 clients through botocore's event system.

Every injector takes `events`: a client's `meta.events`, or a session's `events` to reach clients
the session creates later (such as the handler's own): botocore copies a session's handlers into
each client when it creates it, so register before the client exists.

Publishers send batches from several threads at once; each call runs on one thread from
parameter building to its answer, so what an injector decided about a call is kept per thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.awsrequest import AWSResponse

INJECTED = "injected"


@dataclass(frozen=True)
class BatchApi:
    """How one batch API takes its entries and reports those it did not accept."""

    # "<service>.<Operation>", as in botocore's event names.
    operation: str
    # The request parameter that holds the entries.
    entries: str
    # Puts the refused entries, each with its position in the request, into the parsed answer,
    # the way the service reports a partial failure; also given the request's entry count.
    report: Callable[[dict, list[tuple[int, dict]], int], None]
    # The answer to a call every entry of which is refused (then nothing is sent at all).
    empty_answer: Callable[[], dict]


def _report_failed_entries(parsed: dict, refused: list[tuple[int, dict]], _: int) -> None:
    parsed.setdefault("Failed", []).extend(
        {"Id": entry["Id"], "SenderFault": False, "Code": "InternalError", "Message": INJECTED} for _, entry in refused
    )


def _report_failed_records(parsed: dict, refused: list[tuple[int, dict]], total: int) -> None:
    # PutRecords answers one result per request record, in order, so the refused ones go back
    # in at their positions.
    refused_positions = {position for position, _ in refused}
    accepted = iter(parsed.get("Records", []))
    parsed["Records"] = [
        {"ErrorCode": "InternalFailure", "ErrorMessage": INJECTED} if position in refused_positions else next(accepted)
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
    "kinesis.PutRecords", "Records", _report_failed_records, lambda: {"FailedRecordCount": 0, "Records": []}
)


@contextmanager
def refuse_batch_entries(events: Any, api: BatchApi, refuse: Callable[[dict], bool]) -> Iterator[None]:
    """Make a batch API refuse the entries `refuse` picks, the way the service reports it.

    `refuse` gets each request entry as botocore takes it, once per entry and attempt, so it may
    count attempts. The refused entries are taken out of the real request, so they are never
    sent, and put back into the answer as failed with a server-side error.
    """
    call = threading.local()

    def drop_entries(params: dict, **_: Any) -> None:
        entries = params[api.entries]
        call.total = len(entries)
        call.refused = [(position, entry) for position, entry in enumerate(entries) if refuse(entry)]
        # A request with no entries left is invalid; such a call is answered without sending it.
        call.all_refused = bool(entries) and len(call.refused) == len(entries)
        if not call.all_refused:
            refused_positions = {position for position, _ in call.refused}
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


def refuse_send_entries(events: Any, refuse: Callable[[dict], bool]) -> AbstractContextManager[None]:
    """Make SendMessageBatch refuse the entries `refuse` picks (it gets each entry: Id, MessageBody, ...)."""
    return refuse_batch_entries(events, SQS_SEND_MESSAGE_BATCH, refuse)


@contextmanager
def fail_calls(
    events: Any, operation: str, fail: Callable[[dict], bool], error_code: str = "InternalError"
) -> Iterator[None]:
    """Make the calls of `operation` ("<service>.<Operation>") that `fail` picks fail whole, with a 500.

    `fail` gets the call's parameters, once per attempt. A failed call never reaches the
    service: the error is answered in its place, without botocore's retries.
    """
    call = threading.local()

    def judge(params: dict, **_: Any) -> None:
        call.failing = fail(params)

    def answer_failed(**_: Any) -> tuple[AWSResponse, dict] | None:
        if not getattr(call, "failing", False):
            return None
        call.failing = False
        parsed = {
            "Error": {"Code": error_code, "Message": INJECTED, "Type": "Receiver"},
            "ResponseMetadata": {"HTTPStatusCode": 500},
        }
        return AWSResponse(url="", status_code=500, headers={}, raw=None), parsed

    events.register(f"provide-client-params.{operation}", judge)
    events.register(f"before-call.{operation}", answer_failed)
    try:
        yield
    finally:
        events.unregister(f"provide-client-params.{operation}", judge)
        events.unregister(f"before-call.{operation}", answer_failed)
