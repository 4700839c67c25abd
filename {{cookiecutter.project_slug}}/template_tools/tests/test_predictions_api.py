# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The read API: GET /predictions/{key} through Chalice's own test client, over a moto table."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import boto3
import fastjsonschema
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectTimeoutError
from chalice import Chalice, IAMAuthorizer
from chalice.test import Client
from moto import mock_aws

from chalicelib.template_runtime import predictions_api
from chalicelib.template_runtime.destination import prediction_sink
from chalicelib.template_runtime.publishing import OutgoingMessage
from template_tools.stage import PROJECT_DIR, stage_environment

ROUTE = "/predictions/{key}"
ENVELOPE_SCHEMA = json.loads((PROJECT_DIR / "schemas" / "prediction-envelope.schema.json").read_text())
OPENAPI = json.loads((PROJECT_DIR / "schemas" / "predictions-api.openapi.json").read_text())
OPERATION = OPENAPI["paths"][ROUTE]["get"]
validate_envelope = fastjsonschema.compile(ENVELOPE_SCHEMA)

# The statuses the function answers; API Gateway answers the others the document names.
FUNCTION_STATUSES = {"200", "400", "404", "503"}
{%- if cookiecutter.read_api_auth == "iam" %}
GATEWAY_STATUSES = {"403"}

# Chalice's local gateway cannot check SigV4 signatures: it lets every request through and warns.
pytestmark = pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported in local mode")
{%- else %}
GATEWAY_STATUSES: set[str] = set()
{%- endif %}


@pytest.fixture
def table(aws_credentials, stage) -> Iterator[str]:
    """The dev stage's predictions table in moto, keyed like the real one; its name."""
    env = stage.environment_variables
    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName=env["PREDICTIONS_TABLE_NAME"],
            KeySchema=[{"AttributeName": env["PARTITION_KEY_FIELD"], "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": env["PARTITION_KEY_FIELD"], "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        # The API keeps one client per process; each test needs one made inside its own moto.
        predictions_api.dynamodb_client.cache_clear()
        yield env["PREDICTIONS_TABLE_NAME"]
        predictions_api.dynamodb_client.cache_clear()


@pytest.fixture
def api(table, chalice_app) -> Iterator[Any]:
    """Chalice's test HTTP client for the app, with the dev stage's environment."""
    with Client(chalice_app.app, stage_name="dev", project_dir=str(PROJECT_DIR)) as client:
        yield client.http


@pytest.fixture
def field(stage) -> str:
    return stage.environment_variables["PARTITION_KEY_FIELD"]


def envelope(stage, message_id: str = "msg-1") -> dict[str, Any]:
    """A prediction envelope as the pipeline publishes it; non-ASCII on purpose."""
    return {
        "schema_version": "1.0",
        "prediction": {"id": "café-42", "value_scaled": 0.91},
        "message_id": message_id,
        "event_id": f"event-{message_id}",
        "endpoint_name": stage.environment_variables["ENDPOINT_NAME"],
        "endpoint_variant": "AllTraffic",
        "model_version": "1",
        "event_time": "2026-11-02T09:59:59.750Z",
        "prediction_time": "2026-11-02T10:00:00.000Z",
        "latency_ms": 250.0,
        "endpoint_latency_ms": 12.5,
    }


def store(table: str, field: str, key: str, envelope_text: str, expires_at: float | None = None) -> None:
    """Put an item the way the DynamoDB destination writes it."""
    boto3.client("dynamodb").put_item(
        TableName=table,
        Item={
            field: {"S": key},
            "event_time_ms": {"N": "1793613599750"},
            "message_id": {"S": json.loads(envelope_text)["message_id"]},
            "envelope": {"S": envelope_text},
            "expires_at": {"N": str(int(time.time() + 3600 if expires_at is None else expires_at))},
        },
    )


def path(key: str) -> str:
    return "/predictions/" + quote(key, safe="")


@contextmanager
def refused_reads(error: Exception | str) -> Iterator[None]:
    """Make every GetItem fail: with a DynamoDB error code, or by raising a botocore exception.

    The answer takes the place of the call, so botocore's retries never run: this is what the
    API sees once its retries are spent.
    """

    def refuse(**_: Any) -> tuple[AWSResponse, dict]:
        if isinstance(error, Exception):
            raise error
        parsed = {
            "Error": {"Code": error, "Message": "injected"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        return AWSResponse(url="", status_code=400, headers={}, raw=None), parsed

    events = predictions_api.dynamodb_client().meta.events
    events.register("before-call.dynamodb.GetItem", refuse)
    try:
        yield
    finally:
        events.unregister("before-call.dynamodb.GetItem", refuse)


def as_json_schema(schema: Any) -> Any:
    """An OpenAPI 3.0 schema object as JSON Schema: 3.0 says `nullable` where JSON Schema adds "null"."""
    if isinstance(schema, list):
        return [as_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {name: as_json_schema(value) for name, value in schema.items() if name != "nullable"}
    if schema.get("nullable"):
        converted["type"] = [schema["type"], "null"]
    return converted


def resolved(node: dict) -> dict:
    """Follow a local `$ref` such as "#/components/schemas/Error" to what it names."""
    if "$ref" not in node:
        return node
    target: Any = OPENAPI
    for part in node["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    return target


def documented_body_schema(status: int) -> dict:
    return as_json_schema(resolved(OPERATION["responses"][str(status)]["content"]["application/json"]["schema"]))


def test_a_stored_prediction_is_answered_exactly_as_published(api, table, field, stage):
    """Consumers get the envelope byte for byte as the pipeline wrote it, and it meets its schema."""
    published = json.dumps(envelope(stage), separators=(",", ":"), ensure_ascii=False)
    store(table, field, "user-42", published)

    response = api.get(path("user-42"))

    assert response.status_code == 200
    assert response.body == published.encode()
    validate_envelope(json.loads(response.body))
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-cache"


def test_the_api_answers_the_newest_prediction_the_destination_wrote(api, table, stage, executor):
    """Writer and reader share the item layout: what the pipeline stores is what consumers read."""
    newer = json.dumps(envelope(stage, "msg-new"))
    older = json.dumps(envelope(stage, "msg-old"))
    with stage_environment(stage):
        sink = prediction_sink(executor)
    # The older event arrives late; the table keeps the newer prediction.
    assert sink.send([OutgoingMessage(key="msg-new", body=newer, group="user-42", event_time_ms=2_000)]) == {}
    assert sink.send([OutgoingMessage(key="msg-old", body=older, group="user-42", event_time_ms=1_000)]) == {}

    response = api.get(path("user-42"))

    assert response.status_code == 200
    assert response.body == newer.encode()


def test_a_key_is_percent_decoded_before_it_is_looked_up(api, table, field, stage):
    """Keys may hold spaces, slashes and any Unicode: callers percent-encode them in the path."""
    published = json.dumps(envelope(stage))
    store(table, field, "Zoë / 42", published)

    response = api.get(path("Zoë / 42"))

    assert response.status_code == 200
    assert json.loads(response.body) == json.loads(published)


def test_an_unknown_key_is_not_found(api, table, field):
    """A key the pipeline never wrote is a 404 that names the key, not an empty 200."""
    response = api.get(path("nobody"))

    assert response.status_code == 404
    assert response.json_body == {"message": f"no prediction for {field} 'nobody'"}
    assert response.headers["Cache-Control"] == "no-cache"


def test_an_expired_prediction_is_not_found_before_dynamodb_deletes_it(api, table, field, stage):
    """DynamoDB removes expired items days late; the API must not serve them meanwhile."""
    store(table, field, "user-7", json.dumps(envelope(stage)), expires_at=time.time() - 60)

    response = api.get(path("user-7"))

    assert response.status_code == 404
    assert field in response.json_body["message"]


@pytest.mark.parametrize(
    ("raw_key", "reason"),
    [
        pytest.param("%20%20%20", "is empty or only whitespace", id="only-spaces"),
        pytest.param("%09%0A", "is empty or only whitespace", id="only-tab-and-newline"),
        pytest.param("a" * 3000, "is 3000 bytes of UTF-8; at most 2048 are allowed", id="3000-bytes"),
        pytest.param("é" * 1025, "is 2050 bytes of UTF-8; at most 2048 are allowed", id="1025-two-byte-characters"),
        pytest.param("user%0042", "holds the control character U+0000", id="nul"),
        pytest.param("user%1B42", "holds the control character U+001B", id="escape"),
        pytest.param("user%FF", "is not percent-encoded UTF-8", id="not-utf-8"),
    ],
)
def test_a_key_dynamodb_cannot_hold_is_a_bad_request_that_says_why(api, table, field, raw_key, reason):
    """Refused before DynamoDB sees it (which would answer a ValidationException), with the reason."""
    response = api.get("/predictions/" + raw_key)

    assert response.status_code == 400
    assert response.json_body == {"message": f"the {field} {reason}"}


def test_a_key_of_exactly_2048_bytes_is_looked_up(api, table, field):
    """2048 bytes is DynamoDB's own limit for a partition key, so it is the largest key allowed."""
    response = api.get(path("k" * 2048))

    assert response.status_code == 404


@pytest.mark.parametrize(
    "error",
    [
        pytest.param("ProvisionedThroughputExceededException", id="throttled"),
        pytest.param("ResourceNotFoundException", id="table-missing"),
        pytest.param(ConnectTimeoutError(endpoint_url="https://dynamodb.invalid"), id="unreachable"),
    ],
)
def test_a_table_that_does_not_answer_is_a_503_with_a_retry_hint(api, table, error):
    """The caller learns to retry shortly, and never gets a stack trace or a bare 500."""
    with refused_reads(error):
        response = api.get(path("user-42"))

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert "retry" in response.json_body["message"]


{% if cookiecutter.read_api_auth == "iam" -%}
def test_the_route_takes_only_requests_signed_with_iam_credentials(chalice_app):
    """read_api_auth=iam: API Gateway checks SigV4 and execute-api:Invoke before the function runs."""
    assert isinstance(chalice_app.app.routes[ROUTE]["GET"].authorizer, IAMAuthorizer)
    assert OPERATION["security"] == [{"sigv4": []}]
    assert OPENAPI["components"]["securitySchemes"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
{%- else -%}
def test_the_route_is_open_to_anyone_with_the_url(chalice_app):
    """read_api_auth=none: no authorizer on the route, and the document asks for no credentials."""
    assert chalice_app.app.routes[ROUTE]["GET"].authorizer is None
    assert "security" not in OPERATION
    assert "securitySchemes" not in OPENAPI["components"]
{%- endif %}


@pytest.mark.parametrize(("auth", "authorizer_type"), [("iam", IAMAuthorizer), ("none", type(None))])
def test_the_read_api_lets_in_whom_app_py_chooses(auth, authorizer_type):
    """app.py passes the project's choice; the route carries an IAM authorizer for "iam", none for "none"."""
    probe = Chalice(app_name="probe")
    probe.register_blueprint(predictions_api.read_api(auth))
    assert isinstance(probe.routes[ROUTE]["GET"].authorizer, authorizer_type)


def test_an_unknown_read_api_auth_is_refused_rather_than_left_open():
    with pytest.raises(ValueError, match="not one of"):
        predictions_api.read_api("open")


def test_the_openapi_document_names_exactly_the_apps_routes_and_statuses(chalice_app):
    """The document is the consumers' contract: nothing the app serves is missing from it, nothing extra."""
    served = {(route, method) for route, methods in chalice_app.app.routes.items() for method in methods}
    documented = {(route, method.upper()) for route, methods in OPENAPI["paths"].items() for method in methods}

    assert documented == served
    assert set(OPERATION["responses"]) == FUNCTION_STATUSES | GATEWAY_STATUSES
    assert [parameter["name"] for parameter in OPERATION["parameters"]] == ["key"]


def test_the_openapi_envelope_is_the_published_envelope_schema():
    """The document restates the envelope schema in the OpenAPI 3.0 dialect; the two must not drift."""
    restated = documented_body_schema(200)

    assert restated["required"] == ENVELOPE_SCHEMA["required"]
    assert restated["properties"].keys() == ENVELOPE_SCHEMA["properties"].keys()
    assert restated["additionalProperties"] is ENVELOPE_SCHEMA["additionalProperties"]
    for name, rule in ENVELOPE_SCHEMA["properties"].items():
        kept = {word: value for word, value in rule.items() if word not in ("description", "const")}
        assert {word: restated["properties"][name][word] for word in kept} == kept, name
        if "const" in rule:
            assert restated["properties"][name]["enum"] == [rule["const"]], name


def test_every_answer_matches_the_openapi_document(api, table, field, stage):
    """Each status the function answers has the body and headers the document promises for it."""
    store(table, field, "user-42", json.dumps(envelope(stage)))
    with refused_reads("ThrottlingException"):
        unavailable = api.get(path("user-42"))
    answers = [api.get(path("user-42")), api.get("/predictions/%20"), api.get(path("nobody")), unavailable]

    assert {str(answer.status_code) for answer in answers} == FUNCTION_STATUSES
    for answer in answers:
        documented = OPERATION["responses"][str(answer.status_code)]
        assert answer.headers["Content-Type"] == "application/json"
        fastjsonschema.compile(documented_body_schema(answer.status_code))(json.loads(answer.body))
        for header, description in documented.get("headers", {}).items():
            schema = resolved(description)["schema"]
            value = answer.headers[header]
            fastjsonschema.compile(schema)(int(value) if schema["type"] == "integer" else value)
