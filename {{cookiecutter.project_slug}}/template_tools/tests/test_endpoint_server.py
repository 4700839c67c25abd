# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Tests for the local endpoint, through real boto3 as the streaming handler calls it.

`model_dir` (the echo model, template_tools/echo_model/, never the team's) and `endpoint` (a
LocalEndpoint on it, new for each test) come from conftest.py. The model runs in its worker
process; model_environment's and the worker's own tests are in test_model_environment.py.
"""

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.retries.standard import ExponentialBackoff

from chalicelib.template_runtime.aws_limits import INVOKE_ENDPOINT_MAX_REQUEST_BYTES
from template_tools import endpoint_server
from template_tools.endpoint_server import Fault, LocalEndpoint
from template_tools.model_environment import model_python

from .echo_inputs import echo_input, expected_output, id_marker, schema_breaking_input

PROJECT_DIR = Path(__file__).resolve().parents[2]
ENDPOINT_NAME = "{{ cookiecutter.endpoint_name }}"
# botocore's standard retry mode retries throttling and 5xx answers. Its `max_attempts` setting
# counts retries after the first call; `total_max_attempts` counts every call.
ATTEMPTS = 3
RECORD = echo_input(42)


@pytest.fixture(autouse=True)
def no_retry_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore sleeps up to seconds between retries; the count of attempts is what matters."""
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0)


def runtime_client(url: str):
    """A sagemaker-runtime client configured like the handler's: standard retries."""
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=url,
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "total_max_attempts": ATTEMPTS}),
    )


def invoke(url: str, body: object, content_type: str = "application/json") -> dict:
    """Call InvokeEndpoint with a JSON-encodable body."""
    return runtime_client(url).invoke_endpoint(
        EndpointName=ENDPOINT_NAME, Body=json.dumps(body), ContentType=content_type
    )


def test_a_prediction_comes_back_with_the_variant_that_served_it(endpoint) -> None:
    """The handler stamps the variant on every prediction; boto3 reads it from a header."""
    response = invoke(endpoint.url, RECORD)
    output = json.loads(response["Body"].read())
    assert response["InvokedProductionVariant"] == "AllTraffic"
    assert response["ContentType"] == "application/json"
    assert output == expected_output(RECORD)
    assert endpoint.invocations == 1


def test_a_batch_request_gets_its_predictions_in_order(endpoint) -> None:
    """The handler sends many records per call and maps results back by position."""
    records = [echo_input(number) for number in range(20)]
    predictions = json.loads(invoke(endpoint.url, {"instances": records})["Body"].read())["predictions"]
    assert predictions == [expected_output(record) for record in records]


def test_json_lines_requests_are_answered_in_json_lines(endpoint) -> None:
    """The jsonlines option must work end to end, not only in inference.py."""
    records = [echo_input(1), echo_input(2)]
    body = "\n".join(json.dumps(record) for record in records)
    response = runtime_client(endpoint.url).invoke_endpoint(
        EndpointName=ENDPOINT_NAME, Body=body, ContentType="application/jsonlines", Accept="application/jsonlines"
    )
    lines = response["Body"].read().decode().splitlines()
    assert response["ContentType"] == "application/jsonlines"
    assert [json.loads(line) for line in lines] == [expected_output(record) for record in records]


def test_without_accept_the_answer_is_json_as_in_a_sagemaker_container(endpoint) -> None:
    """The containers default Accept to JSON; a client that omits it must find out locally."""
    body = "\n".join(json.dumps(echo_input(number)) for number in [1, 2])
    response = runtime_client(endpoint.url).invoke_endpoint(
        EndpointName=ENDPOINT_NAME, Body=body, ContentType="application/jsonlines"
    )
    assert response["ContentType"] == "application/json"
    assert len(json.loads(response["Body"].read())["predictions"]) == 2


def test_an_invalid_record_raises_model_error_with_the_models_message(endpoint) -> None:
    """ModelError is how the handler tells a bad record (dead-letter it) from an outage."""
    client = runtime_client(endpoint.url)
    with pytest.raises(client.exceptions.ModelError) as raised:
        client.invoke_endpoint(
            EndpointName=ENDPOINT_NAME, Body=json.dumps(schema_breaking_input(1)), ContentType="application/json"
        )
    response = raised.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["OriginalStatusCode"] == 400
    assert response["OriginalMessage"].startswith("record 0: field 'id'")
    assert response["LogStreamArn"] == (
        f"arn:aws:logs:eu-west-1:000000000000:log-group:/aws/sagemaker/Endpoints/{ENDPOINT_NAME}"
    )
    assert endpoint.invocations == 1, "botocore must not retry a ModelError"


@pytest.mark.parametrize(
    ("error", "status", "attempts"),
    [
        ("ThrottlingException", 400, ATTEMPTS),
        ("ServiceUnavailable", 503, ATTEMPTS),
        ("InternalFailure", 500, ATTEMPTS),
        ("ModelNotReadyException", 429, 1),
        ("ModelError", 424, 1),
    ],
)
def test_each_injected_fault_reaches_boto3_as_sagemaker_sends_it(
    endpoint, error: str, status: int, attempts: int
) -> None:
    """The handler's retry decisions rest on botocore seeing the same codes AWS sends."""
    endpoint.inject(Fault(error=error))
    with pytest.raises(ClientError) as raised:
        invoke(endpoint.url, RECORD)
    assert raised.value.response["Error"]["Code"] == error
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert endpoint.invocations == attempts


def test_modeled_faults_raise_their_own_exception_classes(endpoint) -> None:
    """Handlers catch `client.exceptions.X`; those classes must match the local answers."""
    client = runtime_client(endpoint.url)
    for error in ["ModelNotReadyException", "ServiceUnavailable", "InternalFailure", "ModelError"]:
        endpoint.clear_faults()
        endpoint.inject(Fault(error=error))
        with pytest.raises(getattr(client.exceptions, error)):
            client.invoke_endpoint(EndpointName=ENDPOINT_NAME, Body=json.dumps(RECORD))


def test_an_injected_model_error_carries_the_original_status(endpoint) -> None:
    """A faked ModelError must look like a real one, or the handler's parsing goes untested."""
    endpoint.inject(Fault(error="ModelError"))
    with pytest.raises(ClientError) as raised:
        invoke(endpoint.url, RECORD)
    assert raised.value.response["OriginalStatusCode"] == 400
    assert raised.value.response["LogStreamArn"].startswith("arn:aws:logs:eu-west-1:")


def test_a_fault_that_runs_out_lets_botocores_retry_succeed(endpoint) -> None:
    """`times` models a short throttling burst that retries ride out."""
    endpoint.inject(Fault(error="ThrottlingException", times=ATTEMPTS - 1))
    response = invoke(endpoint.url, RECORD)
    assert json.loads(response["Body"].read()) == expected_output(RECORD)
    assert endpoint.invocations == ATTEMPTS


def test_a_fault_with_match_hits_only_the_requests_that_contain_it(endpoint) -> None:
    """`match` poisons one record so a test can follow it through a batch of good ones."""
    endpoint.inject(Fault(error="ModelError", match=id_marker(666), times=1))
    assert invoke(endpoint.url, RECORD)["InvokedProductionVariant"] == "AllTraffic"
    with pytest.raises(ClientError, match="ModelError"):
        invoke(endpoint.url, echo_input(666))
    assert invoke(endpoint.url, echo_input(666))["Body"].read()


def test_earlier_faults_win_and_clear_faults_restores_predictions(endpoint) -> None:
    """Tests stack faults; the order they were injected in decides which one answers."""
    endpoint.inject(Fault(error="ModelNotReadyException", times=1))
    endpoint.inject(Fault(error="ModelError"))
    with pytest.raises(ClientError, match="ModelNotReadyException"):
        invoke(endpoint.url, RECORD)
    with pytest.raises(ClientError, match="ModelError"):
        invoke(endpoint.url, RECORD)
    endpoint.clear_faults()
    assert invoke(endpoint.url, RECORD)["Body"].read()


def test_a_fault_without_an_error_answers_correctly_but_late(endpoint) -> None:
    """A slow endpoint is how a test drives the handler into its deadline."""
    endpoint.inject(Fault(delay_ms=300, times=1))
    started = time.perf_counter()
    assert json.loads(invoke(endpoint.url, RECORD)["Body"].read()) == expected_output(RECORD)
    assert time.perf_counter() - started >= 0.3


def test_fault_refuses_an_error_code_sagemaker_never_sends() -> None:
    """A typo in a test's fault would otherwise make the test pass for the wrong reason."""
    with pytest.raises(ValueError, match="error must be one of"):
        Fault(error="Throttled")


def test_a_loaded_worker_serves_the_next_endpoint_until_a_model_file_changes(model_dir: Path, tmp_path: Path) -> None:
    """Endpoints on one unchanged model share its loaded worker; an edited model gets a fresh one."""
    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    with LocalEndpoint(model_dir=model) as first:
        first_worker = first._worker
    with LocalEndpoint(model_dir=model) as second:
        assert second._worker is first_worker
        assert runtime_client(second.url).invoke_endpoint(EndpointName=ENDPOINT_NAME, Body=json.dumps(RECORD))
    artifact = next(path for path in model.iterdir() if path.is_file())
    artifact.write_text(artifact.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    with LocalEndpoint(model_dir=model) as edited:
        assert edited._worker is not first_worker


def test_latency_is_added_to_every_answer(model_dir: Path) -> None:
    """Local runs report latency percentiles; they must include the model's own time."""
    with LocalEndpoint(model_dir, latency_ms=200) as slow:
        started = time.perf_counter()
        invoke(slow.url, RECORD)
        assert time.perf_counter() - started >= 0.2


def test_concurrent_requests_overlap_their_latency(model_dir: Path) -> None:
    """The handler's concurrent calls only pay off if the endpoint serves them in parallel."""
    # Long enough that four requests started together are all waiting at once, however busy the
    # machine; a server that took them one at a time would never have two waiting.
    with LocalEndpoint(model_dir, latency_ms=1500) as slow:
        client = runtime_client(slow.url)
        calls = [
            threading.Thread(
                target=client.invoke_endpoint,
                kwargs=dict(EndpointName=ENDPOINT_NAME, Body=json.dumps(RECORD)),
            )
            for _ in range(4)
        ]
        for call in calls:
            call.start()
        for call in calls:
            call.join()
        assert slow.invocations == 4
        assert slow.peak_overlap >= 2


def test_an_endpoint_with_a_name_refuses_other_names(model_dir: Path) -> None:
    """A misconfigured ENDPOINT_NAME must fail locally as it would in AWS."""
    with LocalEndpoint(model_dir, endpoint_name=ENDPOINT_NAME) as named:
        client = runtime_client(named.url)
        with pytest.raises(client.exceptions.ValidationError, match="not found"):
            client.invoke_endpoint(EndpointName="someone-elses-model", Body=json.dumps(RECORD))
        assert client.invoke_endpoint(EndpointName=ENDPOINT_NAME, Body=json.dumps(RECORD))


def test_a_request_over_the_payload_limit_is_refused_before_the_model(endpoint) -> None:
    """The handler packs records up to InvokeEndpoint's 6 MB limit; overshooting must show."""
    client = runtime_client(endpoint.url)
    oversized = json.dumps(dict(RECORD, padding="x" * INVOKE_ENDPOINT_MAX_REQUEST_BYTES))
    with pytest.raises(client.exceptions.ValidationError, match="exceeds"):
        client.invoke_endpoint(EndpointName=ENDPOINT_NAME, Body=oversized)


def test_ping_answers_200(endpoint) -> None:
    """SageMaker health-checks containers with GET /ping; scripts wait on it the same way."""
    with urllib.request.urlopen(f"{endpoint.url}/ping", timeout=5) as response:
        assert response.status == 200


def test_the_command_line_prints_its_url_and_stops_on_sigterm(model_dir: Path) -> None:
    """`make local` starts the endpoint as a process, reads its URL and stops it with SIGTERM."""
    # Built beforehand: a first build's progress lines on stderr are not a line per request.
    model_python(model_dir)
    server = subprocess.Popen(
        [sys.executable, "-m", endpoint_server.__name__, "--model-dir", str(model_dir)],
        cwd=PROJECT_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert json.loads(invoke(url, RECORD)["Body"].read()) == expected_output(RECORD)
    finally:
        server.send_signal(signal.SIGTERM)
        _stdout, stderr = server.communicate(timeout=10)
    assert server.returncode == 0
    assert stderr == "", "the server must not log a line per request"


def test_a_request_matching_an_error_fault_and_a_slow_one_gets_the_error(endpoint) -> None:
    """A batch holding a record the model rejects must fail even if another of its records is only slow."""
    endpoint.inject(Fault(match=id_marker(1), times=1, delay_ms=1))
    endpoint.inject(Fault(error="ModelError", match=id_marker(2)))
    client = runtime_client(endpoint.url)
    batch = {"instances": [echo_input(1), echo_input(2)]}
    with pytest.raises(client.exceptions.ModelError):
        client.invoke_endpoint(EndpointName=ENDPOINT_NAME, Body=json.dumps(batch))
