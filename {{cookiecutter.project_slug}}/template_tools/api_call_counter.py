# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Counts the AWS API calls made through a boto3 session, with botocore's event hooks."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import boto3

from .cost import request_billing_units

# botocore emits before-call once per API operation, however many HTTP attempts its retries
# make, so a retried call still counts as one call: what AWS bills and throttles per request
# is the attempts, but what the code chose to do is the call.
_EVENT = "before-call"


class ApiCallCounter:
    """Counts (service, operation) pairs for every client created from `session` after `attach`.

    Clients copy their session's event hooks when they are created, so attach the counter
    before the code under test creates its clients (e.g. before its first invocation).
    """

    def __init__(self, session: boto3.session.Session | None = None) -> None:
        if session is None:
            # Code that calls boto3.client(...) uses boto3's default session, created on first use.
            if boto3.DEFAULT_SESSION is None:
                boto3.setup_default_session()
            session = boto3.DEFAULT_SESSION
        self._session = session
        self._lock = threading.Lock()
        self._calls: Counter[tuple[str, str]] = Counter()
        # Billing units (64 KiB chunks, write units, KiB) per (service, operation, queue name):
        # counted only while measure_units is set, since reading request bodies costs CPU that
        # the benchmark's CPU figures must not include.
        self.measure_units = False
        self._units: Counter[tuple[str, str, str]] = Counter()

    def attach(self) -> ApiCallCounter:
        self._session.events.register(_EVENT, self._count, unique_id=f"api-call-counter-{id(self)}")
        return self

    def detach(self) -> None:
        self._session.events.unregister(_EVENT, unique_id=f"api-call-counter-{id(self)}")

    def __enter__(self) -> ApiCallCounter:
        return self.attach()

    def __exit__(self, *exc_info: object) -> None:
        self.detach()

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._units.clear()

    def snapshot(self) -> Counter[tuple[str, str]]:
        """Calls so far, keyed by (service name, operation name), e.g. ("sqs", "SendMessageBatch")."""
        with self._lock:
            return Counter(self._calls)

    def units_snapshot(self) -> Counter[tuple[str, str, str]]:
        """Billing units so far, keyed by (service, operation, queue name or "")."""
        with self._lock:
            return Counter(self._units)

    def _count(self, model: Any, params: dict[str, Any] | None = None, **_: Any) -> None:
        key = (model.service_model.service_name, model.name)
        units = None
        if self.measure_units:
            body = (params or {}).get("body")
            units = (*key, _queue_name(key[0], body)), request_billing_units(*key, body)
        with self._lock:
            self._calls[key] += 1
            if units is not None:
                self._units[units[0]] += units[1]


def _queue_name(service: str, body: Any) -> str:
    """The queue an SQS call addresses (the last part of its QueueUrl), "" for other calls."""
    if service != "sqs" or not body:
        return ""
    document = body if isinstance(body, dict) else json.loads(body)
    return str(document.get("QueueUrl", "")).rstrip("/").rsplit("/", 1)[-1]
