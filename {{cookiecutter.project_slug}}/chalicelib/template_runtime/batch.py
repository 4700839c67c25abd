# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Processes one Lambda batch of feature events end to end and names the records to retry.

Every record ends in exactly one of three places: its prediction in the destination, a
dead-letter record (its body untouched, the reason in message attributes), or the returned
batchItemFailures so the source delivers it again. A record is only left out of batchItemFailures
once the destination has accepted its prediction or the dead-letter queue its record.
"""

from __future__ import annotations

import base64
import logging
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from chalicelib import extension_points

from . import destination, source
from .aws_limits import SQS_REFUSED_CHARACTER
from .deadline import Deadline, LambdaContext, publishing_budget
from .endpoint import EndpointClients, EndpointInvoker, PayloadCodec, Prediction
from .envelope import SCHEMA_VERSION, build_envelope, encode_envelope, event_moment
from .failures import ENDPOINT_NOT_FOUND, RecordFailure
from .feature_events import (
    Delivery,
    ExtensionPointError,
    FeatureEvent,
    RejectedRecord,
    identity_attributes,
    parse_record,
)
from .input_schema import InputSchema
from .publishing import MIN_POOL_CONNECTIONS, OutgoingMessage, QueuePublisher, Sink, aws_client
from .settings import TRIGGER_REPORTS_BATCH_ITEM_FAILURES, HandlerSettings, SettingsError
from .telemetry import (
    DEAD_LETTER_REFUSED_METRIC,
    ENDPOINT_NOT_FOUND_METRIC,
    Invocation,
    PayloadSampler,
    emf_line,
    emit_metrics,
    log,
)

logger = logging.getLogger(__name__)

# Long model messages are cut so the dead-letter record stays well inside SQS's limits.
_MAX_REASON_CHARS = 1000
# A dead letter whose body is not the record's text as it is says how it is encoded in this
# message attribute; `make redrive` and `make replay` decode it before sending the record again.
BODY_ENCODING_ATTRIBUTE = "body_encoding"
BASE64_BODY = "base64"
# SQS takes no empty message body ("The minimum size is one character", SendMessage in the SQS
# API reference), and a Kinesis record's data may be empty: its dead letter carries this text
# instead, with body_encoding "empty".
EMPTY_BODY = "empty"
EMPTY_BODY_TEXT = "(the record was empty)"
# The error code of a record whose bytes are not UTF-8: the source kept them base64-encoded.
_KEPT_BASE64 = "InvalidEncoding"
# The error code of a record whose prediction the destination refused for good.
PREDICTION_REFUSED = "PredictionRefused"
# Why a record of a publishing round the function had no time left for is retried.
OUT_OF_PUBLISHING_TIME = "not published: the function timeout was too near for another publishing round"


class WholeBatchRetry(RuntimeError):
    """Records must be retried, but Lambda would ignore a failure list: fail the invocation instead.

    Without FunctionResponseTypes [ReportBatchItemFailures] on the event source mapping, Lambda
    treats a successful return as success for every record: SQS deletes the whole batch, Kinesis
    checkpoints past it. A plain `chalice deploy` creates the mapping that way (aws/chalice#2029),
    and it stays so until deploy/event_source_mapping.py fixes it. Until the deployment confirms
    the setting (TRIGGER_REPORTS_BATCH_ITEM_FAILURES), a batch with a record to retry raises, so
    Lambda delivers the whole batch again: what was already published is published twice, nothing
    is lost.
    """

    def __init__(self, retried: int) -> None:
        super().__init__(
            f"{retried} record(s) must be retried, but {TRIGGER_REPORTS_BATCH_ITEM_FAILURES} is not 'true', so Lambda "
            "may ignore a partial batch response: failing the whole batch instead. After `chalice deploy`, run "
            "`python -m template_tools.deploy.event_source_mapping --stage <stage>` to set and confirm it."
        )


def dead_letter(item: FeatureEvent | RejectedRecord, failure: RecordFailure) -> OutgoingMessage:
    """The dead-letter record for a record: the original body, the reason in attributes.

    SQS refuses a message holding a character outside its set (aws_limits.SQS_REFUSED_CHARACTER),
    which a Kinesis record may hold, on every attempt: such a body, and one the source kept
    base64-encoded because it is not UTF-8, travels base64-encoded with body_encoding=base64.
    """
    body, encoding = _carried_body(item, failure)
    attributes = {
        "error_code": failure.code,
        "error_reason": failure.reason[:_MAX_REASON_CHARS] or failure.code,
        "source_message_id": item.message_id,
        "failed_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        # The event's id and time, which a redrive sends along so the record stays the same event.
        **identity_attributes(item),
    }
    if item.receive_count is not None:
        # A queue's delivery count; a Kinesis record has none to give.
        attributes["attempt_count"] = str(item.receive_count)
    if encoding:
        attributes[BODY_ENCODING_ATTRIBUTE] = encoding
    # An attribute value has the body's character rules, and a model's message or an event id
    # may quote the record: a character SQS refuses becomes U+FFFD rather than lose the dead letter.
    attributes = {name: SQS_REFUSED_CHARACTER.sub("\ufffd", value) for name, value in attributes.items()}
    # A FIFO dead-letter queue keeps each group's failures in order too.
    return OutgoingMessage(key=item.message_id, body=body, attributes=attributes, group=item.group)


def _carried_body(item: FeatureEvent | RejectedRecord, failure: RecordFailure) -> tuple[str, str]:
    """The record's body as the dead-letter queue can carry it, and its encoding ("" when sent as it is)."""
    if not item.body:
        return EMPTY_BODY_TEXT, EMPTY_BODY
    if failure.code == _KEPT_BASE64:
        return item.body, BASE64_BODY
    if not SQS_REFUSED_CHARACTER.search(item.body):
        return item.body, ""
    return base64.b64encode(item.body.encode("utf-8", "surrogateescape")).decode("ascii"), BASE64_BODY


def _rejected(event: FeatureEvent, failure: RecordFailure) -> RejectedRecord:
    return event.rejected(failure)


def last_delivery(item: FeatureEvent | RejectedRecord, max_receive_count: int | None) -> str:
    """The note "delivery 5 of 5" when the source will not deliver the record again, else "".

    A record returned on its last delivery would be moved to the dead-letter queue by the queue's
    redrive policy, as it was sent and without a reason; so on that delivery the handler
    dead-letters a record it would retry, with the reason. Only a queue counts deliveries
    (ApproximateReceiveCount), and only the stack tells the handler its maxReceiveCount
    (MAX_RECEIVE_COUNT); without both, the source decides alone.
    """
    received = item.receive_count
    if not max_receive_count or not received or received < max_receive_count:
        return ""
    return f"delivery {received} of {max_receive_count}"


@dataclass(frozen=True)
class Settlement:
    """Where one record of the batch is headed: a message to publish, or back to the source."""

    item: FeatureEvent | RejectedRecord
    message: OutgoingMessage | None = None
    dead_lettered: bool = False
    # Why the record must be delivered again; set when there is nothing to publish.
    retry_reason: str = ""
    # Set for a prediction: what the operators' metrics and the sampled payload log show.
    prediction: Prediction | None = None
    event_age_ms: float | None = None


def publication_rounds(settlements: Sequence[Settlement], ordered: bool) -> list[list[Settlement]]:
    """Group the batch into rounds to publish one after the other.

    An unordered source publishes everything at once. An ordered one publishes the first record
    of every group, then the second, and so on, so a record is only published once every earlier
    record of its group has been.
    """
    if not ordered:
        return [list(settlements)]
    rounds: list[list[Settlement]] = []
    seen: Counter[str] = Counter()
    for settlement in settlements:
        position = seen[settlement.item.group]
        seen[settlement.item.group] += 1
        if position == len(rounds):
            rounds.append([])
        rounds[position].append(settlement)
    return rounds


class BatchProcessor:
    """Parse, predict, publish; built once per process and reused across invocations."""

    def __init__(
        self,
        settings: HandlerSettings,
        invoker: EndpointInvoker,
        predictions: Sink,
        dead_letters: Sink,
        input_schema: InputSchema | None,
        max_prediction_bytes: int = destination.MAX_MESSAGE_BYTES,
    ) -> None:
        self._settings = settings
        self._input_schema = input_schema
        self._invoker = invoker
        self._predictions = predictions
        self._dead_letters = dead_letters
        self._max_prediction_bytes = max_prediction_bytes
        self._payload_sampler = PayloadSampler(settings.payload_log_sample_rate)

    @classmethod
    def from_settings(cls, settings: HandlerSettings) -> BatchProcessor:
        """Create the clients and the thread pool the way Lambda should run them.

        Every client's calls end in time for the invocation to answer: the endpoint's by the
        deadline (endpoint.EndpointClients), the publishing ones within DEADLINE_RESERVE_MS. The
        same threads call the endpoint and publish, so each client keeps a connection for each.
        """
        try:
            publishing = publishing_budget(settings.deadline_reserve_ms)
        except ValueError as error:
            raise SettingsError(f"DEADLINE_RESERVE_MS={settings.deadline_reserve_ms} is {error}") from None
        executor = ThreadPoolExecutor(max_workers=settings.endpoint_concurrency, thread_name_prefix="endpoint")
        pool_size = max(MIN_POOL_CONNECTIONS, settings.endpoint_concurrency)
        endpoint_clients = EndpointClients(settings.endpoint_timeout_seconds, pool_size=pool_size)
        # The full-length client is made now, so the first invocation's first call does not pay for it.
        endpoint_clients.within(Deadline(context=None, reserve_ms=0))
        invoker = EndpointInvoker(
            clients=endpoint_clients,
            endpoint_name=settings.endpoint_name,
            codec=PayloadCodec(settings.endpoint_content_type),
            records_per_call=settings.records_per_endpoint_call,
            payload_limit=settings.endpoint_payload_limit,
            executor=executor,
        )
        dead_letter_queue = settings.dead_letter_queue_name
        dead_letter_client = aws_client("sqs", budget=publishing, pool_size=pool_size)
        return cls(
            settings,
            invoker,
            predictions=destination.prediction_sink(executor),
            dead_letters=QueuePublisher(
                dead_letter_client, dead_letter_queue, executor, fifo=dead_letter_queue.endswith(".fifo")
            ),
            input_schema=InputSchema.from_setting(settings.model_input_schema),
        )

    def process(self, records: Sequence[dict[str, Any]], context: LambdaContext | None) -> dict[str, Any]:
        """Handle one batch; return Lambda's partial batch response."""
        with Invocation(getattr(context, "aws_request_id", None)):
            return self._process(records, context)

    def _process(self, records: Sequence[dict[str, Any]], context: LambdaContext | None) -> dict[str, Any]:
        started = time.perf_counter()
        deadline = Deadline(context, self._settings.deadline_reserve_ms)
        parsed = [self._admit(source.delivery(record)) for record in records]
        events = [item for item in parsed if isinstance(item, FeatureEvent)]
        outcomes = self._invoker.predict(events, deadline)
        self._report_missing_endpoint(outcomes)
        predicted = {event.message_id: outcome for event, outcome in zip(events, outcomes, strict=True)}
        predicted_at = datetime.now(UTC)
        settlements = [self._settle(item, predicted.get(item.message_id), predicted_at) for item in parsed]

        retry = self._publish(settlements, deadline)
        self._log_batch(settlements, retry, started)
        if retry and not self._settings.trigger_reports_batch_item_failures:
            raise WholeBatchRetry(len(retry))
        return {
            "batchItemFailures": [{"itemIdentifier": item.failure_id} for item in parsed if item.message_id in retry]
        }

    def _report_missing_endpoint(self, outcomes: Sequence[Prediction | RecordFailure]) -> None:
        """Count the records the endpoint's absence failed, on a metric line of their own the stack alarms on."""
        missing = [o for o in outcomes if isinstance(o, RecordFailure) and o.code == ENDPOINT_NOT_FOUND]
        if not missing:
            return
        endpoint, reason = self._settings.endpoint_name, missing[0].reason
        log(logger, logging.ERROR, "endpoint_not_found", endpoint_name=endpoint, records=len(missing), reason=reason)
        counts = {ENDPOINT_NOT_FOUND_METRIC: len(missing)}
        emit_metrics(emf_line(self._settings.metrics_namespace, {"EndpointName": endpoint}, counts, {}))

    def _admit(self, delivery: Delivery) -> FeatureEvent | RejectedRecord:
        """Parse a record and check its model input: the schema, if any, then the key of its prediction."""
        item = parse_record(delivery, self._settings.max_record_bytes)
        if isinstance(item, RejectedRecord):
            return item
        if self._input_schema is not None and (violation := self._input_schema.violation(item.features)):
            return _rejected(item, RecordFailure.permanent_failure("SchemaViolation", violation))
        if not self._settings.partition_key_field:
            # The prediction keeps the source's group (a FIFO predictions queue's MessageGroupId).
            problem = self._predictions.key_problem(item.group) if item.group else ""
            if problem:
                return _rejected(item, RecordFailure.permanent_failure("InvalidPartitionKey", f"the group {problem}"))
            return item
        key = self._prediction_key(item)
        if isinstance(key, RecordFailure):
            return _rejected(item, key)
        return replace(item, prediction_key=key)

    def _prediction_key(self, event: FeatureEvent) -> str | RecordFailure:
        """The team's key for this prediction (extension_points.prediction_key), or why there is none."""
        field = self._settings.partition_key_field
        try:
            key = extension_points.prediction_key(event.features, field)
        except Exception as error:  # noqa: BLE001 - team code: whatever it raises fails this record alone
            return ExtensionPointError.raised("prediction_key", error).failure()
        if key is None or key == "":
            return RecordFailure.permanent_failure(
                "MissingPartitionKey", f"the model input has no {field!r} string or number, which keys its prediction"
            )
        if not isinstance(key, str):
            return ExtensionPointError.returned(
                "prediction_key", f"returned {type(key).__name__}; a key is a string (or None for no key)"
            ).failure()
        # A key the destination refuses would be refused on every delivery, holding its group
        # back; found here, it costs no endpoint call.
        if problem := self._key_problem(key):
            return RecordFailure.permanent_failure("InvalidPartitionKey", f"the prediction key ({field!r}) {problem}")
        return key

    def _key_problem(self, key: str) -> str:
        """Why the destination would refuse this key on every attempt ("" when it takes it)."""
        try:
            key.encode()
        except UnicodeEncodeError:
            # A JSON "\ud800" escape reads as a lone surrogate, which no service's UTF-8 can carry.
            return "is not valid Unicode text (it holds a lone surrogate)"
        return self._predictions.key_problem(key)

    def _settle(
        self, item: FeatureEvent | RejectedRecord, outcome: Prediction | RecordFailure | None, predicted_at: datetime
    ) -> Settlement:
        """Decide where one record goes, before anything is published."""
        if isinstance(item, RejectedRecord):
            return Settlement(item, dead_letter(item, item.failure), dead_lettered=True)
        if isinstance(outcome, Prediction):
            happened_at = event_moment(item)
            try:
                message = self._prediction_message(item, outcome, predicted_at, happened_at)
            except ExtensionPointError as error:
                return Settlement(item, dead_letter(item, error.failure()), dead_lettered=True)
            if message.size() <= self._max_prediction_bytes:
                age_ms = None if happened_at is None else (predicted_at - happened_at).total_seconds() * 1000
                return Settlement(item, message, prediction=outcome, event_age_ms=age_ms)
            failure = RecordFailure.permanent_failure(
                "PredictionTooLarge",
                f"the prediction envelope is {message.size()} bytes; "
                f"the destination takes {self._max_prediction_bytes}",
            )
            return Settlement(item, dead_letter(item, failure), dead_lettered=True)
        assert outcome is not None, "the invoker answers for every event"
        if outcome.permanent:
            return Settlement(item, dead_letter(item, outcome), dead_lettered=True)
        retry_reason = f"{outcome.code}: {outcome.reason}"
        if delivery := last_delivery(item, self._settings.max_receive_count):
            failure = RecordFailure.permanent_failure(outcome.code, f"{retry_reason} ({delivery})")
            return Settlement(item, dead_letter(item, failure), dead_lettered=True)
        return Settlement(item, retry_reason=retry_reason)

    def _publish(self, settlements: list[Settlement], deadline: Deadline) -> dict[str, str]:
        """Publish what can be published; return {message id: reason} for the records to retry.

        For an ordered source, a record that must be retried holds back every later record of
        its group: none of them is published, and all are retried, so they arrive in order.
        A prediction the destination refuses for good is dead-lettered instead (its dead letter
        takes its place in `settlements`). The first round is always published, as the deadline
        reserve is sized for it; a later round only while a slow call of it would still end in
        time, else its records and the rest are retried: a retried record costs a delivery, a
        timed-out invocation the whole batch, published records included.
        """
        ordered = source.ORDERED_BY_GROUP
        retry: dict[str, str] = {}
        held_back: set[str] = set()

        def fail(settlement: Settlement, reason: str) -> None:
            retry[settlement.item.message_id] = reason
            if ordered:
                held_back.add(settlement.item.group)

        for number, round_ in enumerate(publication_rounds(settlements, ordered)):
            out_of_time = number > 0 and not deadline.time_for_another_publishing_call()
            ready: list[Settlement] = []
            for settlement in round_:
                if out_of_time:
                    fail(settlement, OUT_OF_PUBLISHING_TIME)
                elif ordered and settlement.item.group in held_back:
                    retry[settlement.item.message_id] = "held back: an earlier record of its group is being retried"
                elif settlement.retry_reason:
                    fail(settlement, settlement.retry_reason)
                else:
                    ready.append(settlement)
            refused = self._predictions.send([s.message for s in ready if s.message and not s.dead_lettered])
            self._refused_on_last_delivery_is_final(ready, refused)
            ready = self._dead_letter_refused_for_good(ready, refused, settlements)
            refused.update(self._send_dead_letters([s.message for s in ready if s.message and s.dead_lettered]))
            for settlement in ready:
                if settlement.item.message_id in refused:
                    fail(settlement, refused[settlement.item.message_id].reason)
        return retry

    def _refused_on_last_delivery_is_final(self, ready: list[Settlement], refused: dict[str, RecordFailure]) -> None:
        """A prediction refused on its record's last delivery is refused for good: dead-lettered with why."""
        for settlement in ready:
            failure = refused.get(settlement.item.message_id)
            if failure is None or failure.permanent:
                continue
            if delivery := last_delivery(settlement.item, self._settings.max_receive_count):
                final = RecordFailure.permanent_failure(failure.code, f"{failure.reason} ({delivery})")
                refused[settlement.item.message_id] = final

    def _dead_letter_refused_for_good(
        self, ready: list[Settlement], refused: dict[str, RecordFailure], settlements: list[Settlement]
    ) -> list[Settlement]:
        """Turn each prediction the destination refused for good into its record's dead letter.

        Sent again, it would be refused again (failures.py), holding its group back each time. The
        refusal leaves `refused`; the dead letter replaces the settlement in `ready` and in
        `settlements`, which the batch's log and metrics count.
        """
        instead: dict[str, Settlement] = {}
        for settlement in ready:
            failure = refused.get(settlement.item.message_id)
            if settlement.dead_lettered or failure is None or not failure.permanent:
                continue
            del refused[settlement.item.message_id]
            reason = f"the destination refused the prediction for good: {failure.reason}"
            message = dead_letter(settlement.item, RecordFailure.permanent_failure(PREDICTION_REFUSED, reason))
            instead[settlement.item.message_id] = Settlement(settlement.item, message, dead_lettered=True)
        if instead:
            settlements[:] = [instead.get(s.item.message_id, s) for s in settlements]
        return [instead.get(s.item.message_id, s) for s in ready]

    def _send_dead_letters(self, messages: list[OutgoingMessage]) -> dict[str, RecordFailure]:
        """Send dead letters; the ones the queue refuses are returned, to be retried, and said loudly.

        A refused dead letter is never dropped: its record goes back to the source, even when the
        refusal is for good (then it comes back until the source gives up on it), so an operator
        must hear of it.
        """
        refused = self._dead_letters.send(messages)
        for message_id, failure in refused.items():
            log(
                logger,
                logging.ERROR,
                "dead_letter_refused",
                message_id=message_id,
                error_code=failure.code,
                permanent=failure.permanent,
                reason=failure.reason[:200],
            )
        if refused:
            counts = {DEAD_LETTER_REFUSED_METRIC: len(refused)}
            dimensions = {"EndpointName": self._settings.endpoint_name}
            emit_metrics(emf_line(self._settings.metrics_namespace, dimensions, counts, {}))
        return refused

    def _prediction_message(
        self, event: FeatureEvent, prediction: Prediction, predicted_at: datetime, happened_at: datetime | None
    ) -> OutgoingMessage:
        envelope = build_envelope(
            event, prediction, self._settings.endpoint_name, self._settings.model_version, predicted_at
        )
        return OutgoingMessage(
            key=event.message_id,
            body=encode_envelope(envelope),
            # Attributes let subscribers filter without parsing the body.
            attributes={
                "schema_version": SCHEMA_VERSION,
                "model_version": self._settings.model_version,
                "endpoint_name": self._settings.endpoint_name,
            },
            group=event.prediction_key if self._settings.partition_key_field else event.group,
            event_time_ms=None if happened_at is None else int(happened_at.timestamp() * 1000),
            source_order=event.source_order,
        )

    def _log_batch(self, settlements: Sequence[Settlement], retry: dict[str, str], started: float) -> None:
        """One line per record that moved, one summary line, and the batch's metrics."""
        published = [s for s in settlements if s.message and s.item.message_id not in retry]
        predicted = [s for s in published if not s.dead_lettered]
        for settlement in published:
            self._log_record(settlement)
        for message_id, reason in retry.items():
            log(logger, logging.WARNING, "retrying", message_id=message_id, reason=reason[:200])
        counts = {
            "RecordsIn": len(settlements),
            "Predicted": len(predicted),
            "DeadLettered": len(published) - len(predicted),
            "Retried": len(retry),
        }
        log(
            logger,
            logging.INFO,
            "batch_processed",
            records_in=counts["RecordsIn"],
            predicted=counts["Predicted"],
            dead_lettered=counts["DeadLettered"],
            retried=counts["Retried"],
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        latencies = [s.prediction.endpoint_latency_ms for s in predicted if s.prediction]
        ages = [s.event_age_ms for s in predicted if s.event_age_ms is not None]
        emit_metrics(
            emf_line(
                self._settings.metrics_namespace,
                {"EndpointName": self._settings.endpoint_name},
                counts | {"BatchSize": len(settlements)},
                {"EndpointLatency": latencies, "EventAge": ages},
            )
        )

    def _log_record(self, settlement: Settlement) -> None:
        # Ids, codes and timings only, unless this prediction is sampled: features may be personal data.
        item = settlement.item
        ids = {"message_id": item.message_id, "event_id": getattr(item, "event_id", None)}
        if settlement.dead_lettered and settlement.message:
            log(logger, logging.WARNING, "dead_lettered", **ids, error_code=settlement.message.attributes["error_code"])
            return
        prediction = settlement.prediction
        fields: dict[str, Any] = {
            "endpoint_latency_ms": round(prediction.endpoint_latency_ms, 1) if prediction else None,
            "event_age_ms": None if settlement.event_age_ms is None else round(settlement.event_age_ms, 1),
        }
        if isinstance(item, FeatureEvent) and prediction and self._payload_sampler.admits():
            fields |= {"features": item.features, "prediction": prediction.output}
        log(logger, logging.INFO, "predicted", **ids, **fields)
