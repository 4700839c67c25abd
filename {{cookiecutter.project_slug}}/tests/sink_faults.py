"""Injects sink failures into a real boto3 client through botocore's event system."""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def refuse_send_entries(events: Any, refuse: Callable[[dict], bool]) -> Iterator[None]:
    """Make SendMessageBatch refuse the entries `refuse` picks, the way SQS reports it.

    `events` is a client's `meta.events`, or a session's `events` to reach clients the
    session creates later (such as the handler's own).

    The refused entries are taken out of the real request, so they are never sent, and put back
    into the answer's `Failed` list with a server-side error, as SQS does for a partial failure.
    """
    # Publishers send batches from several threads at once; each call runs on one thread from
    # parameter building to its answer, so the refused entries are kept per thread.
    call = threading.local()

    def drop_entries(params: dict, **_: Any) -> None:
        call.refused = [entry for entry in params["Entries"] if refuse(entry)]
        params["Entries"] = [entry for entry in params["Entries"] if not refuse(entry)]

    def report_refused(parsed: dict, **_: Any) -> None:
        parsed.setdefault("Failed", []).extend(
            {"Id": entry["Id"], "SenderFault": False, "Code": "InternalError", "Message": "injected"}
            for entry in call.refused
        )

    events.register("provide-client-params.sqs.SendMessageBatch", drop_entries)
    events.register("after-call.sqs.SendMessageBatch", report_refused)
    try:
        yield
    finally:
        events.unregister("provide-client-params.sqs.SendMessageBatch", drop_entries)
        events.unregister("after-call.sqs.SendMessageBatch", report_refused)
