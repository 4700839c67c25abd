# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Fixtures shared by the test modules: fake AWS, the echo model, the local endpoint, the app.

The model is always the echo model (template_tools/echo_model/), never the team's: these tests
check the machinery, and must hold whatever model/ holds.
"""

import functools
import importlib
import json
import shutil
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import boto3
import chalice.test
import pytest
from chalice.local import LambdaContext
from moto import mock_aws
from moto.server import ThreadedMotoServer

from chalicelib.template_runtime.settings import TRIGGER_REPORTS_BATCH_ITEM_FAILURES
from template_tools import sample_event_files
from template_tools.destination import PredictionReader, create_destination, refuse_predictions
from template_tools.emulator import local_aws_environment
from template_tools.endpoint_server import LocalEndpoint
from template_tools.stage import StageSettings, load_stage, stage_environment

from .echo_inputs import ECHO_INPUT_SCHEMA, ECHO_MODEL_DIR, echo_input

# Enough for a local run of a few hundred events to draw from.
MODEL_SAMPLE_COUNT = 200


@pytest.fixture
def aws_credentials(monkeypatch):
    """Fake credentials and a region, so nothing can reach a real AWS account."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "{{ cookiecutter.aws_region }}")


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    """One moto server child process for a test module, as local mode runs it; yields its URL.

    Each test creates resources of its own in it.
    """
    with local_aws_environment() as url:
        yield url


@pytest.fixture
def moto_server(aws_credentials, monkeypatch) -> Iterator[str]:
    """A moto server on 127.0.0.1 that child processes reach through AWS_ENDPOINT_URL; yields its URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    yield url
    # The server's state lives in this process's moto backends: forget it before the next test.
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=30).close()
    server.stop()


@pytest.fixture
def executor():
    with ThreadPoolExecutor(max_workers=4) as pool:
        yield pool


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """The echo model's directory as SageMaker would unpack it: code/ and its artifact, echo.json."""
    directory = tmp_path_factory.mktemp("model")
    shutil.copytree(ECHO_MODEL_DIR, directory, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    return directory


@pytest.fixture
def model_samples() -> list[dict]:
    """Echo model inputs, each with a distinct id; in a keyed project each also carries the key field.

    The key field is the stage's PARTITION_KEY_FIELD, whatever the project named it. Every sample
    has a key of its own, as a clickstream's events mostly do: the fault tests count exactly which
    records a keyed destination keeps and which a held-back group delays, and the tests about keys
    a record shares with others make such records themselves.
    """
    return [echo_input(number) for number in range(MODEL_SAMPLE_COUNT)]


@pytest.fixture
def samples_file(model_samples, tmp_path) -> Path:
    """model_samples as JSON lines, the format of model/samples.jsonl."""
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(sample) + "\n" for sample in model_samples), encoding="utf-8")
    return path


@pytest.fixture
def sample_events_dir(samples_file, tmp_path) -> Path:
    """events/ as `make events` writes it, but from the echo model's samples and against its schema."""
    out = tmp_path / "events"
    arguments = ["--samples", str(samples_file), "--schema", str(ECHO_INPUT_SCHEMA), "--out", str(out)]
    assert sample_event_files.main(arguments) == 0
    return out


@pytest.fixture
def echo_input_schema(monkeypatch) -> Path:
    """The handler checks inputs against the echo model's schema, not model/code/input.schema.json."""
    monkeypatch.setenv("MODEL_INPUT_SCHEMA", str(ECHO_INPUT_SCHEMA))
    return ECHO_INPUT_SCHEMA


@pytest.fixture
def endpoint(model_dir, monkeypatch) -> Iterator[LocalEndpoint]:
    """The model's own inference.py behind the InvokeEndpoint protocol, on 127.0.0.1."""
    with LocalEndpoint(model_dir=model_dir) as local_endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", local_endpoint.url)
        yield local_endpoint


@pytest.fixture
def stage(echo_input_schema) -> StageSettings:
    """The dev stage as .chalice/config.json sets it, but checking inputs against the echo model's schema."""
    settings = load_stage("dev")
    environment = settings.environment_variables | {"MODEL_INPUT_SCHEMA": str(echo_input_schema)}
    return replace(settings, environment_variables=environment)


class PipelineUnderTest:
    """The handler's surroundings in moto: the destination and the dead-letter queue, read back."""

    def __init__(self, environment: dict[str, str]) -> None:
        self._sqs = boto3.client("sqs")
        name = environment["DEAD_LETTER_QUEUE_NAME"]
        fifo = {"FifoQueue": "true"} if name.endswith(".fifo") else {}
        self.dead_letter_url = self._sqs.create_queue(QueueName=name, Attributes=fifo)["QueueUrl"]
        create_destination(environment)
        self._reader = PredictionReader(environment)

    def predictions(self) -> list[dict]:
        """The envelopes published since the last call."""
        return self._reader.read()

    def dead_letters(self) -> list[dict]:
        """The dead-letter records sent since the last call, as SQS messages with attributes."""
        messages = []
        while batch := self._sqs.receive_message(
            QueueUrl=self.dead_letter_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", []):
            messages.extend(batch)
            self._sqs.delete_message_batch(
                QueueUrl=self.dead_letter_url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(batch)],
            )
        return messages

    @contextmanager
    def refusing(self, fragment: str) -> Iterator[None]:
        """Make the destination refuse the predictions whose body contains `fragment`."""
        # Hooks on the default session reach the clients the handler creates on its first call.
        boto3.setup_default_session()
        with refuse_predictions(boto3.DEFAULT_SESSION.events, lambda entry: fragment in entry["body"]):
            yield


@pytest.fixture
def pipeline(aws_credentials, stage, endpoint) -> Iterator[PipelineUnderTest]:
    """The dev stage's destination and dead-letter queue in moto, with the local endpoint up."""
    with mock_aws():
        yield PipelineUnderTest(stage.environment_variables)


@pytest.fixture
def chalice_app(stage, monkeypatch):
    """app.py imported with the dev stage's environment, its cached clients dropped around each test.

    Chalice's test client hands every invocation a context with 3 s left, whatever the function's
    timeout; Lambda gives it the configured timeout (lambda_timeout in .chalice/config.json), so
    the context here does too. With 3 s less the deadline reserve, a cold first call on a busy
    machine ran out of time the function would have had.
    """
    monkeypatch.setattr(
        chalice.test, "LambdaContext", functools.partial(LambdaContext, max_runtime_ms=stage.lambda_timeout * 1000)
    )
    # The test client adds only .chalice/config.json's variables to os.environ; the packaged
    # stack's function also has the one saying its trigger acts on a failure list.
    monkeypatch.setenv(TRIGGER_REPORTS_BATCH_ITEM_FAILURES, "true")
    with stage_environment(stage):
        module = importlib.import_module("app")
    module.batch_processor.cache_clear()
    yield module
    module.batch_processor.cache_clear()
