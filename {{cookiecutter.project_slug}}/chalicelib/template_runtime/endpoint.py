# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Calls the SageMaker endpoint for a batch of feature events: few requests, run concurrently.

Records are packed into as few InvokeEndpoint requests as the payload limit and the
records-per-call cap allow, the requests run on a bounded thread pool, and every answer is
mapped back to its record. When a multi-record request fails because of its content (a
ModelError), each of its records is sent again on its own, so one bad record fails only itself.

No attempt outlives the invocation's deadline (deadline.py): each one's timeouts are cut to the
time left, and retries are made here, only while there is time for them, not by botocore.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionError as ConnectionFailure, HTTPClientError, ReadTimeoutError

from .deadline import Deadline
from .failures import RecordFailure, classify_endpoint_error
from .feature_events import FeatureEvent

# Attempts per request, the first included, while the deadline leaves time for them.
MAX_ATTEMPTS = 3
# Full jitter: a random wait up to 0.5 s before the second attempt, up to 1 s before the third.
BACKOFF_BASE_SECONDS = 0.5
# Within a region a connection to the endpoint takes milliseconds; one that takes a second is not coming.
CONNECT_TIMEOUT_SECONDS = 1.0
# An attempt with less time than this left before the deadline is not started: no answer would come in time.
MIN_ATTEMPT_SECONDS = 0.2
_THE_DEADLINE = "the invocation's deadline (DEADLINE_RESERVE_MS before the function timeout)"


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one record."""

    output: Any
    variant: str
    endpoint_latency_ms: float


Outcome = Prediction | RecordFailure


class PayloadCodec:
    """Encodes records into one request body and splits the answer, per content type.

    application/json follows SageMaker's framework containers: one record is sent as itself, a
    batch as {"instances": [...]} and answered as {"predictions": [...]}. application/jsonlines
    sends one record per line and expects one answer per line.
    """

    def __init__(self, content_type: str) -> None:
        if content_type not in ("application/json", "application/jsonlines"):
            raise ValueError(f"unsupported endpoint content type {content_type!r}")
        self.content_type = content_type
        self._lines = content_type == "application/jsonlines"

    @staticmethod
    def encode_record(features: dict[str, Any]) -> bytes:
        return json.dumps(features, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def request_size(self, record_sizes: Sequence[int]) -> int:
        """Bytes of the request that would carry records of these encoded sizes."""
        separators = max(len(record_sizes) - 1, 0)
        if self._lines or len(record_sizes) == 1:
            return sum(record_sizes) + separators
        return len(b'{"instances":[]}') + sum(record_sizes) + separators

    def join(self, encoded: Sequence[bytes]) -> bytes:
        if self._lines:
            return b"\n".join(encoded)
        if len(encoded) == 1:
            return encoded[0]
        return b'{"instances":[' + b",".join(encoded) + b"]}"

    def split(self, body: bytes, count: int) -> list[Any]:
        """The answers for `count` records, in order; ValueError if the answer does not fit."""
        text = body.decode("utf-8")
        if self._lines:
            answers = [json.loads(line) for line in text.splitlines() if line.strip()]
        elif count == 1:
            return [json.loads(text)]
        else:
            document = json.loads(text)
            answers = document.get("predictions") if isinstance(document, dict) else None
            if not isinstance(answers, list):
                raise ValueError('a batch answer must be a JSON object with a "predictions" list')
        if len(answers) != count:
            raise ValueError(f"the endpoint answered {len(answers)} predictions for {count} records")
        return answers


@dataclass(frozen=True)
class _Call:
    """One planned InvokeEndpoint request: positions of its records in the batch and the body."""

    positions: tuple[int, ...]
    body: bytes


@dataclass(frozen=True)
class Attempt:
    """A sagemaker-runtime client, and the timeouts its calls end by."""

    client: Any
    connect_seconds: float
    read_seconds: float
    # Shorter than ENDPOINT_TIMEOUT_SECONDS allows, because the deadline comes first.
    cut_short: bool


class EndpointClients:
    """sagemaker-runtime clients by attempt length, so an attempt's timeouts end by the deadline.

    botocore takes its timeouts from the client, not from the call, and its connect and read
    timeouts together bound how long an attempt waits (botocore's Config reference:
    https://botocore.amazonaws.com/v1/documentation/api/latest/reference/config.html). So an
    attempt with 4 s left goes through a client whose timeouts add up to 4 s at most. Lengths are
    rounded down to whole seconds (tenths under one second), so a process makes few clients: each
    is made on first use and kept. Their own retries are off; EndpointInvoker retries.
    """

    def __init__(self, read_timeout_seconds: int, pool_size: int = 10) -> None:
        self._longest_tenths = round((read_timeout_seconds + CONNECT_TIMEOUT_SECONDS) * 10)
        self._pool_size = pool_size
        self._clients: dict[int, Any] = {}
        self._lock = threading.Lock()

    def within(self, deadline: Deadline) -> Attempt | None:
        """The longest attempt that ends by the deadline, or None if too little time is left."""
        while (tenths := self._tenths_left(deadline)) is not None:
            seconds = tenths / 10
            connect = min(CONNECT_TIMEOUT_SECONDS, seconds / 4)
            with self._lock:
                client = self._clients.get(tenths)
            if client is not None:
                return Attempt(client, connect, seconds - connect, cut_short=tenths < self._longest_tenths)
            # Making a client takes CPU time (a lot on a busy machine): count it against the deadline.
            self._make(tenths, connect, seconds - connect)
        return None

    def _tenths_left(self, deadline: Deadline) -> int | None:
        """Tenths of a second the next attempt may take: whole seconds above one, at most the longest."""
        seconds_left = min(deadline.seconds_left(), self._longest_tenths / 10)
        tenths = math.floor(seconds_left * 10)
        if tenths >= 10:
            tenths -= tenths % 10
        return tenths if tenths >= MIN_ATTEMPT_SECONDS * 10 else None

    def _make(self, tenths: int, connect_seconds: float, read_seconds: float) -> None:
        config = Config(
            connect_timeout=connect_seconds,
            read_timeout=read_seconds,
            retries={"mode": "standard", "total_max_attempts": 1},
            max_pool_connections=self._pool_size,
        )
        # boto3 does not create clients from one session safely on several threads at once.
        with self._lock:
            if tenths not in self._clients:
                self._clients[tenths] = boto3.client("sagemaker-runtime", config=config)


def _worth_another_attempt(error: Exception) -> bool:
    """What botocore's standard retry mode would retry: throttling, 5xx answers, failed connections.

    A ModelError is the container's own answer (424) and is not retried (boto3 guide, "Retries":
    https://docs.aws.amazon.com/boto3/latest/guide/retries.html).
    """
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status == 429 or status >= 500 or "Throttl" in error.response.get("Error", {}).get("Code", "")
    return isinstance(error, ConnectionFailure | HTTPClientError)


class EndpointInvoker:
    """Predicts a batch of feature events through one SageMaker endpoint."""

    def __init__(
        self,
        clients: EndpointClients,
        endpoint_name: str,
        codec: PayloadCodec,
        records_per_call: int,
        payload_limit: int,
        executor: Executor,
    ) -> None:
        self._clients = clients
        self._endpoint_name = endpoint_name
        self._codec = codec
        self._records_per_call = records_per_call
        self._payload_limit = payload_limit
        self._executor = executor

    def plan_calls(self, events: Sequence[FeatureEvent]) -> tuple[list[_Call], dict[int, RecordFailure]]:
        """Pack records, in order, into requests under both the size limit and the count cap."""
        calls: list[_Call] = []
        too_large: dict[int, RecordFailure] = {}
        positions: list[int] = []
        encoded: list[bytes] = []

        def close_call() -> None:
            if positions:
                calls.append(_Call(tuple(positions), self._codec.join(encoded)))
                positions.clear()
                encoded.clear()

        for position, event in enumerate(events):
            record = self._codec.encode_record(event.features)
            if self._codec.request_size([len(record)]) > self._payload_limit:
                too_large[position] = RecordFailure.permanent_failure(
                    "PayloadTooLarge",
                    f"the record encodes to {len(record)} bytes; InvokeEndpoint takes at most {self._payload_limit}",
                )
                continue
            sizes = [len(item) for item in encoded] + [len(record)]
            if len(sizes) > self._records_per_call or self._codec.request_size(sizes) > self._payload_limit:
                close_call()
            positions.append(position)
            encoded.append(record)
        close_call()
        return calls, too_large

    def predict(self, events: Sequence[FeatureEvent], deadline: Deadline) -> list[Outcome]:
        """One outcome per event, in the same order."""
        calls, outcomes = self.plan_calls(events)
        isolate: list[_Call] = []
        for call, result in zip(calls, self._executor.map(lambda c: self._invoke(c, deadline), calls), strict=True):
            if isinstance(result, RecordFailure) and result.permanent and len(call.positions) > 1:
                isolate.append(call)
                continue
            self._record(outcomes, call, result)

        # Second pass, so a failing batch request never waits on a pool slot held by itself.
        singles = [
            _Call((position,), self._codec.join([self._codec.encode_record(events[position].features)]))
            for call in isolate
            for position in call.positions
        ]
        for call, result in zip(singles, self._executor.map(lambda c: self._invoke(c, deadline), singles), strict=True):
            self._record(outcomes, call, result)
        return [outcomes[position] for position in range(len(events))]

    @staticmethod
    def _record(outcomes: dict[int, Outcome], call: _Call, result: list[Prediction] | RecordFailure) -> None:
        if isinstance(result, RecordFailure):
            outcomes.update((position, result) for position in call.positions)
        else:
            outcomes.update(zip(call.positions, result, strict=True))

    def _invoke(self, call: _Call, deadline: Deadline) -> list[Prediction] | RecordFailure:
        failure = RecordFailure.transient_failure(
            "DeadlineExceeded", f"{_THE_DEADLINE} came before the record was sent"
        )
        for number in range(1, MAX_ATTEMPTS + 1):
            attempt = self._clients.within(deadline)
            if attempt is None:
                return failure
            outcome = self._attempt(call, attempt)
            if not isinstance(outcome, Exception):
                return outcome
            if isinstance(outcome, ReadTimeoutError):
                # Not retried: SageMaker goes on with a request the client gave up on, so another
                # attempt would add load to an endpoint that is already too slow.
                return _timed_out(attempt)
            failure = classify_endpoint_error(outcome)
            if failure.permanent or not _worth_another_attempt(outcome):
                return failure
            pause = random.uniform(0, BACKOFF_BASE_SECONDS * 2 ** (number - 1))
            if deadline.seconds_left() - pause < MIN_ATTEMPT_SECONDS:
                return failure
            time.sleep(pause)
        return failure

    def _attempt(self, call: _Call, attempt: Attempt) -> list[Prediction] | RecordFailure | Exception:
        """One InvokeEndpoint attempt: the predictions, a failure of the answer, or the call's exception."""
        started = time.perf_counter()
        try:
            response = attempt.client.invoke_endpoint(
                EndpointName=self._endpoint_name,
                ContentType=self._codec.content_type,
                Accept=self._codec.content_type,
                Body=call.body,
            )
            body = response["Body"].read()
        except Exception as error:  # noqa: BLE001 - classify_endpoint_error re-raises what it does not know
            return error
        latency_ms = (time.perf_counter() - started) * 1000
        try:
            answers = self._codec.split(body, len(call.positions))
        except ValueError as error:
            # An answer that cannot be mapped back is treated like a model error, so a batch
            # request falls back to one call per record.
            return RecordFailure.permanent_failure("InvalidModelOutput", str(error))
        variant = response.get("InvokedProductionVariant", "")
        return [Prediction(output=answer, variant=variant, endpoint_latency_ms=latency_ms) for answer in answers]


def _timed_out(attempt: Attempt) -> RecordFailure:
    limit = f"all the time left before {_THE_DEADLINE}" if attempt.cut_short else "ENDPOINT_TIMEOUT_SECONDS"
    return RecordFailure.transient_failure(
        "EndpointTimeout", f"the endpoint did not answer within {attempt.read_seconds:.1f} s, {limit}"
    )
