# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Calls the SageMaker endpoint for a batch of feature events: few requests, run concurrently.

Records are packed into as few InvokeEndpoint requests as the payload limit and the
records-per-call cap allow, the requests run on a bounded thread pool, and every answer is
mapped back to its record. When a multi-record request fails because of its content (a
ModelError), each of its records is sent again on its own, so one bad record fails only itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from .deadline import Deadline
from .failures import RecordFailure, classify_endpoint_error
from .feature_events import FeatureEvent


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


class EndpointInvoker:
    """Predicts a batch of feature events through one SageMaker endpoint."""

    def __init__(
        self,
        runtime_client: Any,
        endpoint_name: str,
        codec: PayloadCodec,
        records_per_call: int,
        payload_limit: int,
        executor: Executor,
    ) -> None:
        self._runtime = runtime_client
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
        if not deadline.allows_new_work():
            return RecordFailure.transient_failure(
                "DeadlineExceeded", "the invocation ran out of time before this record was sent"
            )
        started = time.perf_counter()
        try:
            response = self._runtime.invoke_endpoint(
                EndpointName=self._endpoint_name,
                ContentType=self._codec.content_type,
                Accept=self._codec.content_type,
                Body=call.body,
            )
            body = response["Body"].read()
        except Exception as error:  # noqa: BLE001 - classify_endpoint_error re-raises what it does not know
            return classify_endpoint_error(error)
        latency_ms = (time.perf_counter() - started) * 1000
        try:
            answers = self._codec.split(body, len(call.positions))
        except ValueError as error:
            # An answer that cannot be mapped back is treated like a model error, so a batch
            # request falls back to one call per record.
            return RecordFailure.permanent_failure("InvalidModelOutput", str(error))
        variant = response.get("InvokedProductionVariant", "")
        return [Prediction(output=answer, variant=variant, endpoint_latency_ms=latency_ms) for answer in answers]
