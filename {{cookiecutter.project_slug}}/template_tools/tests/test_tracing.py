# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""X-Ray is on: an invocation's AWS calls show up as subsegments of its trace, and the stack traces."""

import json

import pytest
from aws_xray_sdk.core import xray_recorder
from aws_xray_sdk.core.lambda_launcher import LambdaContext
from chalice.test import Client

from template_tools.deploy.configuration import load_settings
from template_tools.deploy.iam_policy import StackArns, function_policy
from template_tools.stage import PROJECT_DIR

from .echo_inputs import echo_body
from .lambda_events import lambda_event

HANDLER = "handle_feature_events"


class RecordingEmitter:
    """Keeps what the recorder sends instead of sending it to an X-Ray daemon."""

    def __init__(self) -> None:
        self.entities: list[dict] = []

    def send_entity(self, entity) -> None:
        self.entities.append(entity.to_dict())

    def set_daemon_address(self, address) -> None:
        pass


@pytest.fixture
def traced(monkeypatch):
    """The recorder as Lambda runs it: the trace from _X_AMZN_TRACE_ID, every subsegment sent on close."""
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-67a1b2c3-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1")
    saved = xray_recorder.context, xray_recorder.emitter, xray_recorder.streaming_threshold
    emitter = RecordingEmitter()
    xray_recorder.configure(context=LambdaContext(), emitter=emitter, sampling=False, streaming_threshold=0)
    yield emitter
    context, original_emitter, threshold = saved
    xray_recorder.configure(context=context, emitter=original_emitter, streaming_threshold=threshold)


def test_the_endpoint_call_and_the_publishing_are_subsegments_of_the_invocation(pipeline, chalice_app, traced):
    """Without the subsegments a trace would show one opaque block where the time actually goes.

    The calls run on the handler's thread pool; in Lambda each thread joins the invocation's
    trace through _X_AMZN_TRACE_ID, which this test sets the same way.
    """
    body = echo_body(1)
    with Client(chalice_app.app, stage_name="dev", project_dir=str(PROJECT_DIR)) as client:
        response = client.lambda_.invoke(HANDLER, lambda_event(client, [body])).payload
    assert response == {"batchItemFailures": []}
    operations = {entity.get("aws", {}).get("operation") for entity in traced.entities}
    assert "InvokeEndpoint" in operations
    assert operations & {"SendMessageBatch", "PublishBatch", "PutRecords", "PutItem"}
    assert {entity["trace_id"] for entity in traced.entities} == {"1-67a1b2c3-0123456789abcdef01234567"}
    assert len(pipeline.predictions()) == 1


def test_the_chalice_config_turns_active_tracing_on_for_every_function():
    """Chalice reads "xray" to set Tracing: Active on each function it deploys or packages."""
    config = json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text())
    assert config["xray"] is True


def test_the_handler_role_may_send_traces_and_nothing_more_on_the_wildcard():
    """Active tracing without the permission drops every segment; the grant must stay that narrow."""
    statements = function_policy(load_settings("dev"), StackArns())["Statement"]
    wildcard = [s for s in statements if s["Resource"] == "*" or s["Resource"] == ["*"]]
    traces = [s for s in wildcard if s.get("Sid") == "SendTraces"]
    assert len(traces) == 1
    assert set(traces[0]["Action"]) == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
