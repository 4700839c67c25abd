# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The handler's time budget never exceeds the Lambda function's timeout.

Lambda stops a function at its timeout and then treats the whole batch as failed: every record
comes back, the ones already published included. So every endpoint call must end before the
deadline (the timeout less DEADLINE_RESERVE_MS), every publishing call must fit in the reserve, and
a slow endpoint must end in a partial batch response. Each invocation here gets a context with a
function timeout of a few seconds; what it says about the time left is the clock the assertions
read, as Lambda's own is the one that would stop the function.
"""

import threading
{%- if cookiecutter.input_source != "sqs" %}
import time
{%- endif %}
from dataclasses import replace

import boto3
import pytest
from chalice.test import Client

from chalicelib.template_runtime.batch import BatchProcessor
from chalicelib.template_runtime.settings import HandlerSettings, SettingsError
from template_tools.deploy.configuration import load_settings, settings_problems
from template_tools.endpoint_server import Fault
from template_tools.lambda_trigger import FunctionConfiguration, LambdaContext
from template_tools.stage import PROJECT_DIR, packaged_environment, patched_environ

from .echo_inputs import echo_body
from .lambda_events import failure_id, lambda_event

FUNCTION_TIMEOUT_SECONDS = 3
RESERVE_MS = 1000
# Slower than the whole function: without a time budget the handler would still be waiting.
SLOW_ANSWER_MS = 6000
# An attempt ends when its timeouts say so; the thread that notices runs a little later.
SCHEDULING_SLACK_MS = 150


class AttemptClock:
    """The remaining time the invocation's context showed when each InvokeEndpoint attempt began and ended.

    Hooks on the default session reach the clients the handler creates, retries included: botocore
    sends every attempt (before-send) and then asks whether to retry it (needs-retry).
    """

    def __init__(self) -> None:
        self.context: LambdaContext | None = None
        self.started: list[int] = []
        self.ended: list[int] = []
        self._lock = threading.Lock()
        boto3.setup_default_session()
        events = boto3.DEFAULT_SESSION.events
        events.register("before-send.sagemaker-runtime.InvokeEndpoint", self._record(self.started))
        events.register("needs-retry.sagemaker-runtime.InvokeEndpoint", self._record(self.ended))

    def _record(self, moments: list[int]):
        def record(**_) -> None:
            with self._lock:
                moments.append(self.context.get_remaining_time_in_millis())

        return record


@pytest.fixture
def attempts(pipeline):
    clock = AttemptClock()
    yield clock
    # Later tests get a default session without these hooks.
    boto3.setup_default_session()


@pytest.fixture
def handler_environment(pipeline, stage, monkeypatch):
    """Puts the stage's environment, as the packaged stack sets it, into os.environ; returns a setter for overrides."""
    with patched_environ(packaged_environment(stage)):
        yield monkeypatch.setenv


def a_context(timeout_seconds: float = FUNCTION_TIMEOUT_SECONDS) -> LambdaContext:
    function = FunctionConfiguration("handle_feature_events", timeout_seconds=timeout_seconds, memory_size_mb=512)
    return LambdaContext(function, region="eu-west-1", account_id="123456789012")


def lambda_records(chalice_app, count: int) -> list[dict]:
    with Client(chalice_app.app, stage_name="dev", project_dir=str(PROJECT_DIR)) as client:
        return lambda_event(client, [echo_body(n) for n in range(count)])["Records"]


def retried(response: dict) -> set[str]:
    return {failure["itemIdentifier"] for failure in response["batchItemFailures"]}


@pytest.mark.parametrize(
    "settings",
    [
        {},
        # An endpoint timeout longer than the whole function.
        {"ENDPOINT_TIMEOUT_SECONDS": "60"},
        # One call per record, more calls than threads: later calls find the deadline near or past.
        {"RECORDS_PER_ENDPOINT_CALL": "1", "ENDPOINT_CONCURRENCY": "2"},
        # The smallest reserve publishing fits in.
        {"DEADLINE_RESERVE_MS": "400"},
    ],
    ids=["defaults", "endpoint-timeout-60s", "per-record-calls", "small-reserve"],
)
def test_a_slow_endpoint_ends_in_a_partial_batch_response_before_the_function_times_out(
    handler_environment, chalice_app, endpoint, attempts, settings
):
    """Every unpredicted record is named for retry, and the handler answers while Lambda still waits for it."""
    handler_environment("DEADLINE_RESERVE_MS", str(RESERVE_MS))
    for name, value in settings.items():
        handler_environment(name, value)
    endpoint.inject(Fault(delay_ms=SLOW_ANSWER_MS))
    records = lambda_records(chalice_app, 6)
    processor = BatchProcessor.from_settings(HandlerSettings.from_env())
    attempts.context = context = a_context()

    response = processor.process(records, context)

    assert context.get_remaining_time_in_millis() > 0, "the handler answered after Lambda would have stopped it"
    assert retried(response) == {failure_id(record) for record in records}
    assert attempts.started, "the endpoint was never called: the test would prove nothing"


def test_no_endpoint_attempt_starts_or_ends_after_the_deadline(handler_environment, chalice_app, endpoint, attempts):
    """Retries included: botocore's own retries, with the backoff between them, used to run on past the deadline."""
    handler_environment("DEADLINE_RESERVE_MS", str(RESERVE_MS))
    # Each throttled answer takes 1.1 s, so a third attempt could not begin before the 2 s deadline.
    endpoint.inject(Fault(error="ThrottlingException", delay_ms=1100))
    records = lambda_records(chalice_app, 4)
    processor = BatchProcessor.from_settings(HandlerSettings.from_env())
    attempts.context = context = a_context()

    response = processor.process(records, context)

    assert retried(response) == {failure_id(record) for record in records}
    assert attempts.started and len(attempts.ended) == len(attempts.started)
    assert min(attempts.started) > RESERVE_MS, "an attempt started after the deadline"
    assert min(attempts.ended) > RESERVE_MS - SCHEDULING_SLACK_MS, "an attempt ran on past the deadline"
    assert context.get_remaining_time_in_millis() > 0


def botocore_retry_waits_seconds(attempts: int) -> float:
    """The longest botocore's standard retry mode waits between `attempts` attempts: up to 1 s, 2 s, 4 s...

    It waits a random time up to 2**(attempt - 1) seconds (boto3 guide, "Retries").
    """
    return 2 ** (attempts - 1) - 1


class ClientConfigs:
    """The config of every boto3 client created while it records, by service."""

    def __init__(self, monkeypatch) -> None:
        self.by_service: dict[str, list] = {}
        create = boto3.client

        def recording_client(service, *args, **kwargs):
            client = create(service, *args, **kwargs)
            self.by_service.setdefault(service, []).append(client.meta.config)
            return client

        monkeypatch.setattr(boto3, "client", recording_client)

    def publishing(self) -> list:
        """Every client but the endpoint's."""
        services = [service for service in self.by_service if service != "sagemaker-runtime"]
        return [config for service in services for config in self.by_service[service]]


@pytest.mark.parametrize("reserve_ms", ["400", "1000", "3000", "10000"])
def test_every_publishing_call_fits_in_the_deadline_reserve(handler_environment, monkeypatch, reserve_ms):
    """Explicit timeouts and attempts, not botocore's 60 s ones: the worst case ends within DEADLINE_RESERVE_MS."""
    handler_environment("DEADLINE_RESERVE_MS", reserve_ms)
    configs = ClientConfigs(monkeypatch)

    BatchProcessor.from_settings(HandlerSettings.from_env())

    publishing = configs.publishing()
    # The dead-letter queue's client and the destination's.
    assert len(publishing) >= 2
    for config in publishing:
        attempts = config.retries["total_max_attempts"]
        attempt_seconds = config.connect_timeout + config.read_timeout
        worst_case_seconds = attempts * attempt_seconds + botocore_retry_waits_seconds(attempts)
        assert worst_case_seconds <= int(reserve_ms) / 1000


def test_every_client_keeps_a_connection_for_each_thread_of_the_pool(handler_environment, monkeypatch):
    """The same threads call the endpoint and publish; a smaller pool makes them open and drop connections."""
    handler_environment("ENDPOINT_CONCURRENCY", "64")
    configs = ClientConfigs(monkeypatch)

    BatchProcessor.from_settings(HandlerSettings.from_env())

    assert configs.by_service and all(
        config.max_pool_connections >= 64 for configs in configs.by_service.values() for config in configs
    )


@pytest.mark.parametrize(
    ("timeout_seconds", "reserve_ms", "refused"),
    [(4, None, True), (5, None, False), (4, "1000", False), (30, "29000", True)],
    ids=["4s-default-reserve", "5s-default-reserve", "4s-1s-reserve", "30s-29s-reserve"],
)
def test_a_function_timeout_that_leaves_the_endpoint_too_little_is_refused_before_deploy(
    timeout_seconds, reserve_ms, refused
):
    """The endpoint gets the function timeout less DEADLINE_RESERVE_MS; under 2 s of it, every
    record would be retried on its deadline, and `make deploy` says so before the stack exists."""
    settings = load_settings("dev")
    environment = settings.environment | ({"DEADLINE_RESERVE_MS": reserve_ms} if reserve_ms else {})
    problems = settings_problems(replace(settings, lambda_timeout=timeout_seconds, environment=environment))
    complaints = [problem for problem in problems if "DEADLINE_RESERVE_MS" in problem]
    assert bool(complaints) == refused, problems
    if refused:
        assert f"lambda_timeout {timeout_seconds} s" in complaints[0]


def test_a_reserve_too_short_to_publish_in_is_refused_with_its_name(handler_environment):
    """Otherwise every publishing call would be cut short, and every record retried for ever."""
    handler_environment("DEADLINE_RESERVE_MS", "100")
    with pytest.raises(SettingsError, match="DEADLINE_RESERVE_MS"):
        BatchProcessor.from_settings(HandlerSettings.from_env())
{%- if cookiecutter.input_source != "sqs" %}


class SlowDestination:
    """Every publishing call waits `seconds` before it is sent: a destination that answers slowly.

    A hook on the default session reaches the clients the handler creates; before-call runs ahead
    of moto's own before-send handler, which answers the call.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0
        boto3.setup_default_session()
        boto3.DEFAULT_SESSION.events.register("before-call", self._wait)

    def _wait(self, model, **_) -> None:
        # Not the endpoint's calls, nor STS's, which a topic's ARN is made with once.
        if model.service_model.service_name not in ("sagemaker-runtime", "sts"):
            self.calls += 1
            time.sleep(self.seconds)


@pytest.fixture
def slow_destination(pipeline):
    yield SlowDestination(seconds=0.5)
    boto3.setup_default_session()


def test_publishing_one_groups_records_in_turn_stops_before_a_slow_destination_runs_past_the_function_timeout(
    handler_environment, chalice_app, slow_destination
):
    """An ordered source's records of one group are published one round after another, each a
    call; ten of them at 0.5 s would take 5 s of a 3 s function. The rounds stop while the
    answer still comes in time, and the records not reached are retried, the group's last ones."""
    handler_environment("DEADLINE_RESERVE_MS", "2000")
    with Client(chalice_app.app, stage_name="dev", project_dir=str(PROJECT_DIR)) as client:
        records = lambda_event(client, [echo_body(n) for n in range(10)], groups=["one-group"] * 10)["Records"]
    processor = BatchProcessor.from_settings(HandlerSettings.from_env())
    context = a_context()

    response = processor.process(records, context)

    assert context.get_remaining_time_in_millis() > 0, "the handler answered after Lambda would have stopped it"
    in_order = [failure_id(record) for record in records]
    published = len(records) - len(retried(response))
    assert 0 < published < len(records)
    # Those retried are the group's last records: it arrives in order.
    assert retried(response) == set(in_order[published:])
    assert slow_destination.calls == published
{%- endif %}
