# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Faults injected into the whole local pipeline: where every record ends, and that none is lost.

Each test runs the real handler behind the Lambda-like trigger, against moto's server and the
local endpoint, with faults from a FaultPlan: endpoint outages and throttling through the
endpoint's Fault hook, refused publishes through botocore hooks, and invocations killed with
SIGKILL in a child process. {% if cookiecutter.input_source == "kinesis" %}The stream's trigger gives up on a record after a small number of
retries, so that retries and the on-failure destination are reached within the test; it polls
one shard per poller, so the batches of a shard are exact.{% else %}Queues use visibility timeouts of a few seconds and a small
maxReceiveCount so that redeliveries and redrives happen within the test. The single-fault
tests poll with one poller, so batches and receive counts are exact (moto's SQS server does not
lock concurrent receives and now and then hands one message to two of them); the soak keeps the
trigger's full concurrency.{% endif %}
"""

import json
import threading
from dataclasses import replace

import boto3
import fastjsonschema
import pytest
from botocore.config import Config
from botocore.exceptions import ReadTimeoutError

from chalicelib.template_runtime.batch import PREDICTION_REFUSED
from chalicelib.template_runtime.endpoint import PayloadCodec
from template_tools.fault_plan import (
    ENDPOINT_FAULTS,
    FAULT_KINDS,
    PERMANENT_FAULT_CODES,
    SINK_INVALID_REFUSAL,
    FaultInjection,
    FaultPlan,
    FaultTimings,
    Outage,
)
from template_tools.local_pipeline import (
    EXERCISE_TRIGGER_LIMITS,
    PipelineHooks,
    input_text,
    load_input_schema,
    model_input_schema_path,
    run_local_pipeline,
)
from template_tools.soak import LAST_DELIVERY_SUFFIX, EventOutcome, dead_letter_reason, run_soak
from template_tools.source import TRIGGER_DEAD_LETTER_REASON, record_body, record_message_id
from template_tools.stage import patched_environ

from .echo_inputs import ECHO_INPUT_SCHEMA, echo_input, expected_output
from .timing import PUBLISHING_RESERVE_MS, scaled_timings

# The visibility timeout covers the trigger's batching window plus the function timeout, so a
# record never comes back while its first invocation still runs, even on a loaded machine (a
# shorter one made a record now and then published twice in CI). Scaled: see timing.py; the
# invocation keeps 2 s for the endpoint and PUBLISHING_RESERVE_MS to publish in.
FAST = scaled_timings(visibility_timeout_seconds=7, max_receive_count=2, function_timeout_seconds=6)
# A killed invocation runs in a fresh child process. Its import is the Init phase, which the
# timeout does not count, but its first call creates every client before its first record: on a
# machine busy with other suites that took over the 1 s a 2 s timeout leaves, and the trigger
# stopped the invocation at the function timeout before the child reached its kill point. The
# child is killed as soon as it gets there, so a long timeout costs only the wait for the
# redelivery. Not scaled.
KILLABLE = FaultTimings(
    visibility_timeout_seconds=10,
    max_receive_count=2,
    function_timeout_seconds=9,
    deadline_reserve_ms=PUBLISHING_RESERVE_MS,
)
{%- if cookiecutter.input_source != "kinesis" %}
# What an endpoint outage answers every request with (fault_plan.py: a 503), as the handler reports it.
OUTAGE_ERROR_CODE = "ServiceUnavailable"
{%- endif %}
# A throttled call is retried after a random wait of up to 0.5 s, then up to 1 s, in real time:
# the endpoint's share of the invocation (3 s) must outlast that, so these are not scaled.
PATIENT = FaultTimings(
    visibility_timeout_seconds=5,
    max_receive_count=3,
    function_timeout_seconds=5,
    deadline_reserve_ms=PUBLISHING_RESERVE_MS,
)


class DeliveryLog:
    """Every record the trigger hands to the handler: message id -> its deliveries, numbered 1, 2, ..."""

    def __init__(self) -> None:
        self.receive_counts: dict[str, list[int]] = {}
        self.batches: list[list[str]] = []
        self._lock = threading.Lock()

    def wrap(self, handler):
        def invoke(event, context):
            with self._lock:
                message_ids = [record_message_id(record) for record in event["Records"]]
                self.batches.append(message_ids)
                for message_id in message_ids:
                    deliveries = self.receive_counts.setdefault(message_id, [])
                    deliveries.append(len(deliveries) + 1)
            return handler(event, context)

        return invoke

    def batch_of(self, message_id: str) -> list[str]:
        """The first batch that carried `message_id`."""
        return next(batch for batch in self.batches if message_id in batch)


def run_plan(plan: FaultPlan, model_dir, **options):
    """Run the plan through the pipeline; return the summary, the delivery log and the injection."""
    deliveries = DeliveryLog()
    injection = FaultInjection(plan)
    timings = plan.timings
    with patched_environ(timings.handler_environment()), injection as hooks:
        inner = hooks.wrap_handler
        hooks = replace(hooks, wrap_handler=lambda handler: deliveries.wrap(inner(handler)))
        summary = run_local_pipeline(
            len(plan.events),
            model_dir=model_dir,
            visibility_timeout_seconds=timings.visibility_timeout_seconds,
            stall_timeout_seconds=options.pop("stall_timeout_seconds", 20),
            progress=None,
            events=plan.events,
            max_receive_count=timings.max_receive_count,
            function_timeout_seconds=timings.function_timeout_seconds,
            hooks=hooks,
            settle=True,
            maximum_concurrency=options.pop("maximum_concurrency", 1),
            trigger_limits=EXERCISE_TRIGGER_LIMITS,
            **options,
        )
    return summary, deliveries, injection


def message_id_of(summary, event) -> str:
    return summary.ledger.message_ids[event.event_id]


@pytest.mark.slow
def test_records_an_endpoint_outage_outlasts_reach_the_dead_letter_queue{% if cookiecutter.input_source != "kinesis" %}_with_their_reason_and_body_intact{% endif %}(
    model_dir,
    samples_file,
):
    """An outage longer than {% if cookiecutter.input_source == "kinesis" %}the trigger's retries must end in the DLQ (on-failure destination){% else %}maxReceiveCount deliveries must end in the DLQ with its reason{% endif %}, never in a void."""
    plan = FaultPlan.healthy(20, FAST, samples_path=samples_file)
    plan = replace(plan, outages=[Outage(after_sent=0, seconds=120)])

    summary, deliveries, _ = run_plan(plan, model_dir)

    assert (summary.lost, summary.predicted, summary.dead_lettered) == (0, 0, 20)
{%- if cookiecutter.input_source == "kinesis" %}
    for message in summary.dead_letters:
        # Sent by the trigger: the records' shard and sequence number range, no handler reason.
        assert "error_code" not in message.get("MessageAttributes", {})
        assert json.loads(message["Body"])["requestContext"]["condition"] == "RetryAttemptsExhausted"
    batch_sizes = [json.loads(message["Body"])["KinesisBatchInfo"]["batchSize"] for message in summary.dead_letters]
    assert sum(batch_sizes) == 20
{%- else %}
    bodies = {message_id_of(summary, event): event.body() for event in plan.events}
    last = f"(delivery {FAST.max_receive_count} of {FAST.max_receive_count})"
    dead_lettered = set()
    for message in summary.dead_letters:
        # Local mode tells the handler the queue's maxReceiveCount, as the stack does: on the last
        # delivery it dead-letters each record itself, the original body with the endpoint's
        # failure (the outage's 503) as its reason, rather than leave it to the redrive, which
        # would move it without one.
        attributes = {name: value["StringValue"] for name, value in message.get("MessageAttributes", {}).items()}
        assert attributes.get("error_code") == OUTAGE_ERROR_CODE, "moved by the redrive, without a reason"
        source_message_id = attributes["source_message_id"]
        assert message["Body"] == bodies[source_message_id]
        assert attributes["error_reason"].startswith(f"{OUTAGE_ERROR_CODE}: ")
        assert attributes["error_reason"].endswith(last)
        assert attributes["attempt_count"] == str(FAST.max_receive_count)
        dead_lettered.add(source_message_id)
    assert dead_lettered == set(bodies)
{%- endif %}
    assert all(counts == [1, 2] for counts in deliveries.receive_counts.values())


@pytest.mark.slow
def test_records_throttled_for_a_while_are_all_predicted_after_counted_redeliveries(model_dir, samples_file, stage):
    """Throttling that outlasts botocore's retries costs a redelivery of that batch, not a record."""
    plan = FaultPlan.healthy(10, PATIENT, samples_path=samples_file)
    throttled = plan.events[3]
    throttled.fault, throttled.times = "throttled", 3  # every attempt of one delivery

    summary, deliveries, _ = run_plan(plan, model_dir)

    throttled_id = message_id_of(summary, throttled)
    assert deliveries.receive_counts[throttled_id] == [1, 2]
    per_record = stage.environment_variables["RECORDS_PER_ENDPOINT_CALL"] == "1"
    batch = deliveries.batch_of(throttled_id)
{%- if cookiecutter.input_source == "kinesis" %}
    # The records that shared its InvokeEndpoint call fail with it: its whole batch in batch mode,
    # itself alone in per-record mode. The stream retries from the first of them, so the later
    # records of the batch come back too{% if cookiecutter.output_destination != "dynamodb" %} and are published again{% else %}; their second write is refused as not newer{% endif %}.
    retried = batch[batch.index(throttled_id) :] if per_record else batch
    assert summary.deliveries - summary.sent == len(retried)
    assert (summary.lost, summary.predicted, summary.dead_lettered) == (0, 10, 0)
    assert summary.duplicates == {% if cookiecutter.output_destination == "dynamodb" %}0{% else %}len(retried) - (1 if per_record else len(batch)){% endif %}
{%- else %}
    # Only the records that shared its InvokeEndpoint call came back, once: its whole batch in
    # batch mode, itself alone in per-record mode.
    assert (summary.lost, summary.predicted, summary.dead_lettered, summary.duplicates) == (0, 10, 0, 0)
    assert summary.deliveries - summary.sent == (1 if per_record else len(batch))
{%- endif %}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kill_point", "published_before_the_kill"),
    [("calling_endpoint", False), ("publishing", True)],
)
def test_a_handler_killed_mid_batch_loses_nothing_and_its_republished_records_count_as_duplicates(
    model_dir, samples_file, kill_point, published_before_the_kill
):
    """A SIGKILLed invocation deletes nothing: its batch comes back after the visibility timeout."""
    plan = FaultPlan.healthy(10, KILLABLE, samples_path=samples_file)
    victim = plan.events[2]
    victim.fault, victim.variant = "killed", kill_point

    summary, deliveries, injection = run_plan(plan, model_dir)

    ((point, killed_batch),) = injection.killer.killed
    assert point == kill_point
    assert (summary.lost, summary.predicted, summary.dead_lettered) == (0, 10, 0)
    assert all(deliveries.receive_counts[message_id] == [1, 2] for message_id in killed_batch)
{%- if cookiecutter.output_destination == "dynamodb" %}
    # A prediction written before the kill is not written again: the table refuses a write that
    # is not newer than the one it holds, so the table's stream shows no duplicate.
    assert summary.duplicates == 0
{%- else %}
    assert summary.duplicates == (len(killed_batch) if published_before_the_kill else 0)
{%- endif %}
    assert summary.failed_batches == 1


@pytest.mark.slow
def test_predictions_the_destination_refuses_are_redelivered_until_published(model_dir, samples_file):
    """A partial publish failure retries the refused record until it is published, once."""
    # Unscaled: with FAST's 1 s of work per invocation, a suite on a loaded 2-core machine let a
    # third delivery run out of time, and the refused record went to the dead-letter queue.
    plan = FaultPlan.healthy(10, replace(PATIENT, max_receive_count=3), samples_path=samples_file)
    refused = plan.events[4]
    refused.fault, refused.times = "sink_refused", 2

    summary, deliveries, injection = run_plan(plan, model_dir)

    assert injection.refused == 2
    refused_id = message_id_of(summary, refused)
    assert deliveries.receive_counts[refused_id] == [1, 2, 3]
    assert summary.ledger.prediction_arrivals[refused_id] == 1
{%- if cookiecutter.input_source == "kinesis" %}
    # The stream retries from the refused record, so the records after it in its batch come back
    # with it{% if cookiecutter.output_destination != "dynamodb" %} and are published again{% else %}; their second write is refused as not newer{% endif %}.
    batch = deliveries.batch_of(refused_id)
    riding_along = set(batch[batch.index(refused_id) + 1 :])
    assert (summary.lost, summary.predicted, summary.dead_lettered) == (0, 10, 0)
    assert summary.duplicates == {% if cookiecutter.output_destination == "dynamodb" %}0{% else %}2 * len(riding_along){% endif %}
    for message_id, counts in deliveries.receive_counts.items():
        assert counts == ([1, 2, 3] if message_id == refused_id or message_id in riding_along else [1])
{%- else %}
    assert (summary.lost, summary.predicted, summary.dead_lettered, summary.duplicates) == (0, 10, 0, 0)
    assert all(counts == [1] for message_id, counts in deliveries.receive_counts.items() if message_id != refused_id)
{%- endif %}


def test_a_stalled_endpoint_answers_later_than_the_whole_function_timeout(endpoint, samples_file):
    """The fault "endpoint slower than its read timeout": a call given the whole function timeout
    to read the answer still times out, and the input's next request is answered at once."""
    timings = FaultTimings(
        visibility_timeout_seconds=1, max_receive_count=2, function_timeout_seconds=1, deadline_reserve_ms=500
    )
    plan = FaultPlan.healthy(4, timings, samples_path=samples_file)
    stalled, healthy = plan.events[0], plan.events[1]
    stalled.fault, stalled.times = "stalled", 1
    # Even a read timeout of the whole function timeout, which no handler can afford, is too short.
    runtime = boto3.client(
        "sagemaker-runtime",
        endpoint_url=endpoint.url,
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(read_timeout=timings.function_timeout_seconds, retries={"total_max_attempts": 1}),
    )

    def invoke(event):
        return runtime.invoke_endpoint(EndpointName="local", Body=event.input_text, ContentType="application/json")

    with FaultInjection(plan) as hooks:
        hooks.endpoint_ready(endpoint)
        assert invoke(healthy)["Body"].read()
        with pytest.raises(ReadTimeoutError):
            invoke(stalled)
        # Its one stalled request is used up: the next delivery's call gets its answer.
        assert invoke(stalled)["Body"].read()
    assert timings.stalled_answer_ms > timings.function_timeout_seconds * 1000


@pytest.mark.slow
def test_a_record_the_endpoint_answers_after_the_function_timeout_is_predicted_once_on_a_later_delivery(
    model_dir, samples_file
):
    """A stalled endpoint call costs the record a delivery, never the record. Whether the handler
    gives up on the call in time or the trigger stops the invocation at the function timeout, as
    Lambda does, the late answer publishes nothing: no duplicate."""
    plan = FaultPlan.healthy(10, FAST, samples_path=samples_file)
    stalled = plan.events[3]
    stalled.fault, stalled.times = "stalled", 1

    summary, deliveries, _ = run_plan(plan, model_dir)

    assert deliveries.receive_counts[message_id_of(summary, stalled)] == [1, 2]
    assert (summary.lost, summary.predicted, summary.dead_lettered, summary.duplicates) == (0, 10, 0, 0)


@pytest.mark.slow
@pytest.mark.skipif(SINK_INVALID_REFUSAL is None, reason="a Kinesis stream refuses no single record for good")
def test_a_prediction_the_destination_refuses_for_good_is_dead_lettered_with_its_reason_at_once(
    model_dir, samples_file
):
    """A refusal that is the sender's fault comes back on every attempt: the record is dead-lettered
    with the handler's reason on its first delivery, not retried until the source gives up."""
    plan = FaultPlan.healthy(10, PATIENT, samples_path=samples_file)
    rejected = plan.events[4]
    rejected.fault = "sink_invalid"

    summary, deliveries, injection = run_plan(plan, model_dir)

    rejected_id = message_id_of(summary, rejected)
    assert deliveries.receive_counts[rejected_id] == [1]
    assert (summary.lost, summary.predicted, summary.dead_lettered, summary.duplicates) == (0, 9, 1, 0)
    (dead,) = summary.ledger.dead_letter_arrivals[rejected_id]
    attributes = {name: value["StringValue"] for name, value in dead["MessageAttributes"].items()}
    assert attributes["error_code"] == PREDICTION_REFUSED
    assert SINK_INVALID_REFUSAL.code in attributes["error_reason"]
    assert injection.rejected_as_invalid == 1


@pytest.mark.slow
@pytest.mark.skipif(SINK_INVALID_REFUSAL is None, reason="a Kinesis stream refuses no single record for good")
def test_a_prediction_refused_for_good_is_refused_in_a_killed_invocations_child_process_too(model_dir, samples_file):
    """The killed invocation runs in a child process of its own: its publish must meet the same
    destination, or the soak counts a prediction the destination would never have taken."""
    plan = FaultPlan.healthy(10, KILLABLE, samples_path=samples_file)
    rejected, victim = plan.events[0], plan.events[2]
    rejected.fault = "sink_invalid"
    victim.fault, victim.variant = "killed", "publishing"

    summary, _, injection = run_plan(plan, model_dir)

    rejected_id = message_id_of(summary, rejected)
    assert len(injection.killer.killed) == 1
    assert summary.ledger.prediction_arrivals.get(rejected_id, 0) == 0
    reasons = [
        message["MessageAttributes"]["error_code"]["StringValue"]
        for message in summary.ledger.dead_letter_arrivals[rejected_id]
    ]
    assert reasons and set(reasons) == {PREDICTION_REFUSED}
    assert summary.lost == 0


@pytest.mark.slow
def test_the_ledger_reports_a_record_a_handler_drops_as_lost(model_dir, samples_file):
    """The harness must be able to fail: a record deleted without an outcome shows up as lost."""
    plan = FaultPlan.healthy(10, FAST, samples_path=samples_file)
    dropped = plan.events[6].event_id

    def drop_one(handler):
        def invoke(event, context):
            kept = [record for record in event["Records"] if dropped not in record_body(record)]
            handler({"Records": kept}, context)
            return {"batchItemFailures": []}

        return invoke

    with patched_environ(FAST.handler_environment()):
        summary = run_local_pipeline(
            10,
            model_dir=model_dir,
            visibility_timeout_seconds=FAST.visibility_timeout_seconds,
            stall_timeout_seconds=3,
            progress=None,
            events=plan.events,
            hooks=PipelineHooks(wrap_handler=drop_one),
            maximum_concurrency=1,
            trigger_limits=EXERCISE_TRIGGER_LIMITS,
        )

    assert (summary.lost, summary.predicted) == (1, 9)
    assert summary.ledger.message_ids[dropped] not in summary.ledger.accounted


@pytest.mark.slow
def test_a_small_soak_loses_nothing_and_its_ledger_adds_up(model_dir, samples_file):
    """Every fault at once, seeded: each event is predicted or dead-lettered with a reason, none lost."""
    timings = FaultTimings(visibility_timeout_seconds=3, max_receive_count=2, function_timeout_seconds=3)
    # Dense enough that 120 events plan every kind of fault, with one killed invocation (a child
    # process of its own; the kill tests above cover kills one by one).
    plan = FaultPlan.seeded(
        120, 0.25, seed=50, timings=timings, samples_path=samples_file, schema_path=model_input_schema_path(model_dir)
    )
    assert set(plan.kinds()) == {"none", *FAULT_KINDS}, "the seed should plan every kind of fault"

    ledger = run_soak(plan, model_dir=model_dir, progress=None)

    assert ledger.lost == 0
    assert ledger.misreported == 0, ledger.contradictions
    assert ledger.sent == len(plan.events)
{%- if cookiecutter.output_destination == "dynamodb" %}
    # Superseded: the table already held a newer prediction of the event's key (see soak.py).
    assert ledger.predicted + sum(ledger.dead_lettered.values()) + ledger.summary.superseded == ledger.sent
{%- else %}
    assert ledger.predicted + sum(ledger.dead_lettered.values()) == ledger.sent
{%- endif %}
    assert ledger.duplicates == ledger.summary.duplicates
    assert ledger.outages == 1 and ledger.killed_invocations == plan.kinds()["killed"]
    # Records with a permanent fault never become predictions.
    permanent = [o for o in ledger.outcomes.values() if o.fault in PERMANENT_FAULT_CODES]
    assert permanent and not any(outcome.predictions for outcome in permanent)
    # A prediction the destination refused for good is dead-lettered with the handler's reason (a
    # sink_invalid record the outage caught before it was predicted is the source's to give up on).
    if ledger.rejected_predictions:
        rejected = [o for o in ledger.outcomes.values() if o.fault == "sink_invalid"]
        assert any(PREDICTION_REFUSED in outcome.dead_letters for outcome in rejected)
    rows = [line.split("  ")[0] for line in ledger.table().splitlines()]
    assert "lost" in rows and "duplicates" in rows


@pytest.mark.parametrize(
    ("outcome", "contradiction"),
    [
        (EventOutcome("malformed", predictions=0, dead_letters=["InvalidJson"]), None),
        (EventOutcome("oversize", predictions=0, dead_letters=[TRIGGER_DEAD_LETTER_REASON]), None),
        (EventOutcome("none", predictions=2, dead_letters=[]), None),
        (EventOutcome("model_rejected", predictions=1, dead_letters=[]), "model_rejected record predicted"),
        (EventOutcome("throttled", predictions=0, dead_letters=["ModelError"]), "dead-lettered as ModelError"),
        (EventOutcome("none", predictions=1, dead_letters=[TRIGGER_DEAD_LETTER_REASON]), None),
        (EventOutcome("none", predictions=1, dead_letters=["InvalidJson"]), "both predicted and dead-lettered"),
        (EventOutcome("sink_invalid", predictions=0, dead_letters=[PREDICTION_REFUSED]), None),
        (EventOutcome("sink_invalid", predictions=1, dead_letters=[]), "sink_invalid record predicted"),
        (EventOutcome("sink_invalid", predictions=0, dead_letters=["ModelError"]), "dead-lettered as ModelError"),
        (EventOutcome("stalled", predictions=0, dead_letters=["EndpointTimeout"]), "dead-lettered as EndpointTimeout"),
        (EventOutcome("stalled", predictions=1, dead_letters=[TRIGGER_DEAD_LETTER_REASON]), None),
        # The handler gave up on the record's last delivery, as the redrive would have: the source's doing.
        (EventOutcome("none", predictions=0, dead_letters=["ServiceUnavailable" + LAST_DELIVERY_SUFFIX]), None),
        (EventOutcome("stalled", predictions=1, dead_letters=["EndpointTimeout" + LAST_DELIVERY_SUFFIX]), None),
        (EventOutcome("none", predictions=0, dead_letters=["ServiceUnavailable"]), "as ServiceUnavailable"),
    ],
)
def test_an_outcome_that_contradicts_its_fault_is_reported_as_misreported(outcome, contradiction):
    """The soak fails on a wrong outcome, not only on a missing one."""
    found = outcome.contradiction()
    assert (found is None) if contradiction is None else (contradiction in found)


def _dead_letter(**attributes: str) -> dict:
    return {"MessageAttributes": {name: {"StringValue": value} for name, value in attributes.items()}}


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (_dead_letter(error_code="InvalidJson", error_reason="not JSON"), "InvalidJson"),
        (
            _dead_letter(error_code="ServiceUnavailable", error_reason="ServiceUnavailable: down (delivery 2 of 2)"),
            "ServiceUnavailable" + LAST_DELIVERY_SUFFIX,
        ),
        ({"Body": "moved by the redrive policy, as sent"}, TRIGGER_DEAD_LETTER_REASON),
    ],
)
def test_the_ledger_tells_a_last_delivery_dead_letter_from_a_handlers_verdict(message, reason):
    """A record the handler dead-letters on its last delivery was given up on, not found unpredictable."""
    assert dead_letter_reason(message) == reason


def test_the_same_seed_plans_the_same_faults_and_bodies_are_what_the_fault_says(samples_file):
    """A soak is only worth re-running if the plan is reproducible; each fault must look like itself."""
    timings = FaultTimings(max_record_bytes=4096)
    validate = fastjsonschema.compile(load_input_schema(ECHO_INPUT_SCHEMA))
    first, second = (
        FaultPlan.seeded(400, 0.2, seed=9, timings=timings, samples_path=samples_file, schema_path=ECHO_INPUT_SCHEMA)
        for _ in range(2)
    )
    assert [(e.event_id, e.fault, e.times, e.variant) for e in first.events] == [
        (e.event_id, e.fault, e.times, e.variant) for e in second.events
    ]
    assert {"schema", "not_json"} <= {event.variant for event in first.events if event.fault == "malformed"}
    for event in first.events:
        if event.fault == "oversize":
            # A real JSON object, just too long, padded with a field of its own.
            body = event.body()
            assert len(body.encode()) > timings.max_record_bytes
            assert json.loads(body)["features"].keys() - event.features.keys() == {"_padding"}
        elif event.fault == "malformed" and event.variant == "not_json":
            with pytest.raises(ValueError):
                json.loads(event.body())
        elif event.fault == "malformed":
            # JSON, and the model's own schema refuses its input.
            with pytest.raises(fastjsonschema.JsonSchemaException):
                validate(json.loads(event.body())["features"])
        else:
            if event.fault == "throttled":
                assert 1 <= event.times <= 3 * (timings.max_receive_count - 1)
            if event.fault in ("stalled", "sink_refused"):
                assert 1 <= event.times <= timings.max_receive_count - 1
            assert json.loads(event.body()) | {"event_time": None} == {
                "event_id": event.event_id, "event_time": None, "features": event.features
            }  # fmt: skip
    assert first.outages and all(outage.seconds > timings.max_receive_count * timings.visibility_timeout_seconds
                                 for outage in first.outages)  # fmt: skip


def test_a_soak_plan_meets_every_kind_of_fault_however_low_its_rate(samples_file):
    """At 1 % of 300 events the draw misses most kinds; the soak's plan gives each missed kind to a
    healthy event, so `make soak` always meets the stalled endpoint and the refusal for good."""
    drawn, soak = (
        FaultPlan.seeded(300, 0.01, seed=7, samples_path=samples_file, schema_path=ECHO_INPUT_SCHEMA, every_kind=every)
        for every in (False, True)
    )
    assert set(drawn.kinds()) != {"none", *FAULT_KINDS}
    assert set(soak.kinds()) == {"none", *FAULT_KINDS}
    assert {"stalled", "sink_refused"} <= set(soak.kinds())
    # The draw's own faults stay where they were.
    assert all(b.fault == a.fault for a, b in zip(drawn.events, soak.events, strict=True) if a.fault)


def test_endpoint_faults_match_the_input_as_the_handler_sends_it_and_events_of_one_input_share_them(tmp_path):
    """Inputs repeat when a run has more events than samples: the endpoint cannot tell such events
    apart, so each of them must be planned with the fault it will meet."""
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(echo_input(number)) + "\n" for number in range(6)), encoding="utf-8")

    plan = FaultPlan.seeded(120, 0.5, seed=5, samples_path=samples, schema_path=ECHO_INPUT_SCHEMA)

    faults = plan.endpoint_faults()
    assert faults, "the seed should plan endpoint faults"
    for text, planned in faults.items():
        same_input = [event for event in plan.events if event.input_text == text and event.fault not in
                      ("malformed", "oversize")]  # fmt: skip
        assert len(same_input) > 1
        assert {(event.fault, event.times) for event in same_input} == {(planned.fault, planned.times)}
        # The match is the record exactly as the handler puts it into a request, alone or batched,
        # and as a bare body sends it.
        record = PayloadCodec.encode_record(planned.features)
        for content_type in ("application/json", "application/jsonlines"):
            codec = PayloadCodec(content_type)
            assert text in codec.join([record]).decode() and text in codec.join([record, record]).decode()
        assert planned.request_text() == text
    planned_kinds = {planned.fault for planned in faults.values()}
    assert {event.fault for event in plan.events} & set(ENDPOINT_FAULTS) == planned_kinds


def test_an_input_that_lies_inside_another_gets_no_endpoint_fault(tmp_path):
    """A fault matched by content would also hit the input that holds it, and the ledger would be wrong."""
    inner = {"id": "rec-0001"}
    outer = {"id": "rec-0002", "value": 2.5, "context": inner}
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps(inner) + "\n" + json.dumps(outer) + "\n", encoding="utf-8")
    assert input_text(inner) in input_text(outer)

    plan = FaultPlan.seeded(200, 1.0, seed=3, samples_path=samples, schema_path=ECHO_INPUT_SCHEMA)

    assert not any(event.fault in ENDPOINT_FAULTS for event in plan.events if event.features == inner)
    assert any(event.fault in ENDPOINT_FAULTS for event in plan.events if event.features == outer)


@pytest.mark.slow
def test_a_soak_on_repeated_inputs_of_any_shape_meets_its_endpoint_faults_and_traces_every_prediction(
    model_dir, tmp_path
):
    """Inputs of the echo model's shape, each sent several times: model rejections and throttling
    match by content, every prediction is traced to its event by the envelope, and nothing is lost."""
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(echo_input(number)) + "\n" for number in range(8)), encoding="utf-8")
    timings = FaultTimings(visibility_timeout_seconds=4, max_receive_count=3, function_timeout_seconds=4)
    plan = FaultPlan.seeded(
        40, 0.3, seed=2, timings=timings, samples_path=samples, schema_path=model_input_schema_path(model_dir),
        outages=0,
    )  # fmt: skip
    for event in plan.events:
        # Kills and refused publishes have tests of their own; this one is about content matching.
        if event.fault in ("killed", "sink_refused", "sink_invalid"):
            event.fault, event.times, event.variant = None, 0, ""
    rejected = [event for event in plan.events if event.fault == "model_rejected"]
    assert rejected and any(event.fault == "throttled" for event in plan.events)

    ledger = run_soak(plan, model_dir=model_dir, progress=None)

    assert (ledger.lost, ledger.misreported) == (0, 0), ledger.contradictions
    # Dead-lettered by the handler as the model's refusal (a redelivery may add the redrive's copy).
    for event in rejected:
        outcome = ledger.outcomes[event.event_id]
        assert not outcome.predictions and outcome.dead_letters[0] == "ModelError"
    by_event_id = plan.by_event_id()
    for envelope in ledger.summary.predictions:
        assert envelope["prediction"] == expected_output(by_event_id[envelope["event_id"]].features)


@pytest.mark.slow
def test_the_naive_handlers_raw_predictions_are_traced_to_their_events_by_the_answers(model_dir, samples_file):
    """The naive run publishes bare answers with no id: the ledger must still know whose each is."""
    plan = FaultPlan.healthy(20, FaultTimings(), samples_path=samples_file, body_format="bare")
    assert all(event.body() == event.input_text for event in plan.events)

    ledger = run_soak(plan, handler="naive", model_dir=model_dir, progress=None)

    assert (ledger.lost, ledger.misreported, ledger.predicted) == (0, 0, 20)
    # Redeliveries on a busy machine may publish one again: that is a duplicate, never a loss.
    assert all(outcome.predictions >= 1 for outcome in ledger.outcomes.values())


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"visibility_timeout_seconds": 1, "function_timeout_seconds": 2}, "at least the function timeout"),
        ({"max_receive_count": 1}, "at least 2"),
        ({"function_timeout_seconds": 1, "deadline_reserve_ms": 1000}, "longer than the deadline reserve"),
    ],
)
def test_timings_that_would_bring_a_record_back_mid_invocation_are_refused(settings, complaint):
    """Timings Lambda would refuse make faults look like duplicates; refuse them before a run."""
    with pytest.raises(ValueError, match=complaint):
        FaultTimings(**settings)
