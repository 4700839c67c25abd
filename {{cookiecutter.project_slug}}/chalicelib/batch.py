"""Processes one Lambda batch of feature events end to end and names the records to retry.

Every record ends in exactly one of three places: its prediction on the predictions queue, a
dead-letter record (its body untouched, the reason in message attributes), or the returned
batchItemFailures so SQS delivers it again. A record is only left out of batchItemFailures once
SQS has accepted its prediction or its dead-letter record.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config

from .deadline import Deadline, LambdaContext
from .endpoint import EndpointInvoker, PayloadCodec, Prediction
from .envelope import SCHEMA_VERSION, build_envelope, encode_envelope
from .failures import RecordFailure
from .feature_events import FeatureEvent, RejectedRecord, parse_record
from .input_schema import InputSchema
from .publishing import MAX_BATCH_BYTES, OutgoingMessage, QueuePublisher
from .settings import HandlerSettings

logger = logging.getLogger(__name__)

# Long model messages are cut so the dead-letter record stays well inside SQS's limits.
_MAX_REASON_CHARS = 1000


def dead_letter(message_id: str, body: str, receive_count: int, failure: RecordFailure) -> OutgoingMessage:
    """The dead-letter record for a record: the original body, the reason in attributes."""
    return OutgoingMessage(
        key=message_id,
        body=body,
        attributes={
            "error_code": failure.code,
            "error_reason": failure.reason[:_MAX_REASON_CHARS] or failure.code,
            "attempt_count": str(receive_count),
            "source_message_id": message_id,
            "failed_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        },
    )


class BatchProcessor:
    """Parse, predict, publish; built once per process and reused across invocations."""

    def __init__(
        self,
        settings: HandlerSettings,
        invoker: EndpointInvoker,
        predictions: QueuePublisher,
        dead_letters: QueuePublisher,
        input_schema: InputSchema | None,
    ) -> None:
        self._settings = settings
        self._input_schema = input_schema
        self._invoker = invoker
        self._predictions = predictions
        self._dead_letters = dead_letters

    @classmethod
    def from_settings(cls, settings: HandlerSettings) -> BatchProcessor:
        """Create the clients and the thread pool the way Lambda should run them."""
        executor = ThreadPoolExecutor(max_workers=settings.endpoint_concurrency, thread_name_prefix="endpoint")
        pool_size = max(10, settings.endpoint_concurrency)
        runtime = boto3.client(
            "sagemaker-runtime",
            config=Config(
                # botocore's standard mode already retries throttling and 5xx with jittered backoff.
                retries={"mode": "standard", "total_max_attempts": 3},
                connect_timeout=2,
                read_timeout=settings.endpoint_timeout_seconds,
                max_pool_connections=pool_size,
            ),
        )
        sqs = boto3.client(
            "sqs", config=Config(retries={"mode": "standard", "total_max_attempts": 3}, max_pool_connections=pool_size)
        )
        invoker = EndpointInvoker(
            runtime_client=runtime,
            endpoint_name=settings.endpoint_name,
            codec=PayloadCodec(settings.endpoint_content_type),
            records_per_call=settings.records_per_endpoint_call,
            payload_limit=settings.endpoint_payload_limit,
            executor=executor,
        )
        return cls(
            settings,
            invoker,
            predictions=QueuePublisher(sqs, settings.predictions_queue_name, executor),
            dead_letters=QueuePublisher(sqs, settings.dead_letter_queue_name, executor),
            input_schema=InputSchema.from_setting(settings.model_input_schema),
        )

    def process(self, records: Sequence[dict[str, Any]], context: LambdaContext | None) -> dict[str, Any]:
        """Handle one batch; return Lambda's partial batch response."""
        started = time.perf_counter()
        deadline = Deadline(context, self._settings.deadline_reserve_ms)
        parsed = [self._admit(record) for record in records]
        events = [item for item in parsed if isinstance(item, FeatureEvent)]
        outcomes = self._invoker.predict(events, deadline)

        predictions: list[OutgoingMessage] = []
        dead_letters = [
            dead_letter(item.message_id, item.body, item.receive_count, item.failure)
            for item in parsed
            if isinstance(item, RejectedRecord)
        ]
        retry: dict[str, str] = {}
        predicted_at = datetime.now(UTC)
        for event, outcome in zip(events, outcomes, strict=True):
            if isinstance(outcome, Prediction):
                message = self._prediction_message(event, outcome, predicted_at)
                if message.size() > MAX_BATCH_BYTES:
                    failure = RecordFailure.permanent_failure(
                        "PredictionTooLarge", f"the prediction envelope is {message.size()} bytes; SQS takes 1 MiB"
                    )
                    dead_letters.append(dead_letter(event.message_id, event.body, event.receive_count, failure))
                else:
                    predictions.append(message)
            elif outcome.permanent:
                dead_letters.append(dead_letter(event.message_id, event.body, event.receive_count, outcome))
            else:
                retry[event.message_id] = f"{outcome.code}: {outcome.reason}"

        retry.update(self._predictions.send(predictions))
        retry.update(self._dead_letters.send(dead_letters))
        self._log_batch(records, predictions, dead_letters, retry, started)
        return {
            "batchItemFailures": [
                {"itemIdentifier": record["messageId"]} for record in records if record["messageId"] in retry
            ]
        }

    def _admit(self, record: dict[str, Any]) -> FeatureEvent | RejectedRecord:
        """Parse a record and check its model input against the schema, if there is one."""
        item = parse_record(record, self._settings.max_record_bytes)
        if isinstance(item, RejectedRecord) or self._input_schema is None:
            return item
        violation = self._input_schema.violation(item.features)
        if violation is None:
            return item
        failure = RecordFailure.permanent_failure("SchemaViolation", violation)
        return RejectedRecord(item.message_id, item.body, item.receive_count, failure)

    def _prediction_message(
        self, event: FeatureEvent, prediction: Prediction, predicted_at: datetime
    ) -> OutgoingMessage:
        envelope = build_envelope(
            event, prediction, self._settings.endpoint_name, self._settings.model_version, predicted_at
        )
        return OutgoingMessage(
            key=event.message_id,
            body=encode_envelope(envelope),
            # Attributes let subscribers filter without parsing the body.
            attributes={"schema_version": SCHEMA_VERSION, "model_version": self._settings.model_version},
        )

    @staticmethod
    def _log_batch(
        records: Sequence[dict[str, Any]],
        predictions: list[OutgoingMessage],
        dead_letters: list[OutgoingMessage],
        retry: dict[str, str],
        started: float,
    ) -> None:
        # Ids, codes and counts only: feature values may be personal data.
        for message in dead_letters:
            if message.key not in retry:
                logger.warning(
                    json.dumps(
                        {
                            "event": "dead_lettered",
                            "message_id": message.key,
                            "error_code": message.attributes["error_code"],
                        }
                    )
                )
        for message_id, reason in retry.items():
            logger.warning(json.dumps({"event": "retrying", "message_id": message_id, "reason": reason[:200]}))
        logger.info(
            json.dumps(
                {
                    "event": "batch_processed",
                    "records": len(records),
                    "predicted": sum(1 for message in predictions if message.key not in retry),
                    "dead_lettered": sum(1 for message in dead_letters if message.key not in retry),
                    "retrying": len(retry),
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                }
            )
        )
