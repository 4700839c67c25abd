"""Injects sink failures into real boto3 clients through botocore's event system."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from botocore.awsrequest import AWSResponse


@contextmanager
def refuse_send_entries(events: Any, refuse: Callable[[dict], bool]) -> Iterator[None]:
    """Make SendMessageBatch refuse the entries `refuse` picks, the way SQS reports it.

    `events` is a client's `meta.events`, or a session's `events` to reach clients the
    session creates later (such as the handler's own): botocore copies a session's handlers
    into each client when it creates it, so register before the client exists.

    The refused entries are taken out of the real request, so they are never sent, and put back
    into the answer's `Failed` list with a server-side error, as SQS does for a partial failure.
    `refuse` is asked once per entry and attempt, so it may count attempts.
    """
    # Publishers send batches from several threads at once; each call runs on one thread from
    # parameter building to its answer, so the refused entries are kept per thread.
    call = threading.local()

    def drop_entries(params: dict, **_: Any) -> None:
        verdicts = [(entry, refuse(entry)) for entry in params["Entries"]]
        call.refused = [entry for entry, refused in verdicts if refused]
        params["Entries"] = [entry for entry, refused in verdicts if not refused]

    def report_refused(parsed: dict, **_: Any) -> None:
        parsed.setdefault("Failed", []).extend(
            {"Id": entry["Id"], "SenderFault": False, "Code": "InternalError", "Message": "injected"}
            for entry in getattr(call, "refused", [])
        )
        call.refused = []

    events.register("provide-client-params.sqs.SendMessageBatch", drop_entries)
    events.register("after-call.sqs.SendMessageBatch", report_refused)
    try:
        yield
    finally:
        events.unregister("provide-client-params.sqs.SendMessageBatch", drop_entries)
        events.unregister("after-call.sqs.SendMessageBatch", report_refused)


@contextmanager
def refuse_send_message(events: Any, refuse: Callable[[dict], bool]) -> Iterator[None]:
    """Make SendMessage fail with a server error for the messages `refuse` picks.

    `refuse` gets the call's parameters (QueueUrl, MessageBody, ...), once per attempt. A refused
    call never reaches SQS: the error is answered in its place, without botocore's retries.
    """
    call = threading.local()

    def judge(params: dict, **_: Any) -> None:
        call.refused = refuse(params)

    def answer_refused(**_: Any) -> tuple[AWSResponse, dict] | None:
        if not getattr(call, "refused", False):
            return None
        call.refused = False
        parsed = {
            "Error": {"Code": "InternalError", "Message": "injected", "Type": "Receiver"},
            "ResponseMetadata": {"HTTPStatusCode": 500},
        }
        return AWSResponse(url="", status_code=500, headers={}, raw=None), parsed

    events.register("provide-client-params.sqs.SendMessage", judge)
    events.register("before-call.sqs.SendMessage", answer_refused)
    try:
        yield
    finally:
        events.unregister("provide-client-params.sqs.SendMessage", judge)
        events.unregister("before-call.sqs.SendMessage", answer_refused)
