# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The plain `chalice deploy` path, against moto server: deploy, then the event source fix-up.

`chalice deploy` really runs (as a subprocess, pointed at moto by AWS_ENDPOINT_URL), so the
mapping the fix-up changes is the one Chalice created and recorded in .chalice/deployed/. The
features source and dead-letter queue it reads are created first from deploy/source.py's own
CloudFormation resources, as a team using this path would create them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from chalice.local import LambdaContext
from chalice.test import Client

from chalicelib.template_runtime.batch import WholeBatchRetry
from chalicelib.template_runtime.settings import MAX_RECEIVE_COUNT, TRIGGER_REPORTS_BATCH_ITEM_FAILURES
from template_tools.deploy import source
from template_tools.deploy.configuration import PROJECT_DIR, load_settings, load_stage
from template_tools.deploy.event_source_mapping import (
    configure_event_sources,
    deployed_event_sources,
    fix_and_verify,
)
from template_tools.deploy.iam_policy import AccountArns, function_policy
from template_tools.deploy.package import chalice_command
from template_tools.destination import create_destination
from template_tools.endpoint_server import Fault
from template_tools.stage import patched_environ

from .echo_inputs import echo_body, id_marker
from .lambda_events import failure_id, lambda_event

MOTO_ACCOUNT = "123456789012"
# What moto's CloudFormation cannot create; policies only restrict transport, which moto ignores.
MOTO_UNSUPPORTED = {"AWS::SQS::QueuePolicy"}


@pytest.fixture
def project_copy(tmp_path) -> Path:
    """The app, its libraries and its config, where `chalice deploy` may write .chalice/deployed/."""
    copy = tmp_path / "project"
    copy.mkdir()
    shutil.copy(PROJECT_DIR / "requirements.txt", copy / "requirements.txt")
    # moto 5.2 imports REST APIs from OpenAPI 3 only, and Chalice writes Swagger 2.0, so the copy
    # deploys without the routes (the DynamoDB read API, if the app has one): this test is about
    # the handler's trigger; the packaged template (test_packaging.py) covers the API.
    app_source = (PROJECT_DIR / "app.py").read_text(encoding="utf-8")
    (copy / "app.py").write_text(app_source + "\napp.routes.clear()\n", encoding="utf-8")
    shutil.copytree(PROJECT_DIR / "chalicelib", copy / "chalicelib", ignore=shutil.ignore_patterns("__pycache__"))
    (copy / ".chalice").mkdir()
    shutil.copy(PROJECT_DIR / ".chalice" / "config.json", copy / ".chalice" / "config.json")
    return copy


def create_source(settings) -> None:
    """The features queue or stream and the dead-letter queue, from the source module's resources."""
    resources = {
        logical_id: resource
        for logical_id, resource in source.source_resources(settings).items()
        if resource["Type"] not in MOTO_UNSUPPORTED
    }
    boto3.client("cloudformation", region_name=settings.region).create_stack(
        StackName=f"{settings.stack_name}-source", TemplateBody=json.dumps({"Resources": resources})
    )


# Slow tier: a real `chalice deploy` into moto takes seconds.
@pytest.mark.slow
def test_chalice_deploy_then_the_fix_up_turns_on_report_batch_item_failures(moto_server, project_copy):
    """The fix-up is what makes a plain `chalice deploy` safe: without it partial failures are mishandled."""
    settings = load_settings("dev")
    create_source(settings)
    policy = function_policy(settings, AccountArns("aws", settings.region, MOTO_ACCOUNT))
    (project_copy / ".chalice" / "policy-dev.json").write_text(json.dumps(policy))

    deploy(project_copy, settings)

    lambda_client = boto3.client("lambda", region_name=settings.region)
    mappings = deployed_event_sources(project_copy, "dev")
    uuid = mappings[0]["event_uuid"]
    assert not lambda_client.get_event_source_mapping(UUID=uuid).get("FunctionResponseTypes"), (
        "Chalice itself does not set it (aws/chalice#2029); if it now does, the fix-up can go"
    )
    lines: list[str] = []
    assert configure_event_sources(lambda_client, mappings, settings, fix=False, say=lines.append) == [uuid]

    assert configure_event_sources(lambda_client, mappings, settings, fix=True, say=lines.append) == []

    mapping = lambda_client.get_event_source_mapping(UUID=uuid)
    source_arn = mapping["EventSourceArn"]
    dead_letter_arn = f"arn:aws:sqs:{settings.region}:{MOTO_ACCOUNT}:{settings.names.dead_letters}"
    assert mapping == {**mapping, **source.mapping_settings(settings, dead_letter_arn)}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert source_arn.endswith(settings.names.features)
    assert mapping["BatchSize"] == int(settings_env(settings)["TRIGGER_BATCH_SIZE"])
    assert any(line.startswith("OK:") for line in lines)
    # `--no-autogen-policy` made Chalice attach exactly the least-privilege file.
    iam = boto3.client("iam")
    role_name = settings.function_name
    (policy_name,) = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    assert iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"] == policy


# Slow tier: a real `chalice deploy` into moto takes seconds.
@pytest.mark.slow
def test_before_the_fix_up_a_partial_failure_fails_the_whole_batch_and_after_it_only_the_record(
    moto_server, project_copy, endpoint, chalice_app, stage
):
    """No loss window: until the fix-up confirms ReportBatchItemFailures, the handler never answers with a list.

    Lambda ignores a failure list the mapping does not ask for and deletes the whole batch (see
    FACTS: "Partial batch responses need the flag"), so a handler that returned one right after
    `chalice deploy` would lose the record it named. It raises instead (the whole batch comes
    back: duplicates, never loss) until the function's environment, which the fix-up writes,
    says the mapping acts on the list.
    """
    settings = load_settings("dev")
    create_source(settings)
    (project_copy / ".chalice" / "policy-dev.json").write_text(
        json.dumps(function_policy(settings, AccountArns("aws", settings.region, MOTO_ACCOUNT)))
    )
    deploy(project_copy, settings)
    create_destination(stage.environment_variables)
    lambda_client = boto3.client("lambda", region_name=settings.region)
    endpoint.inject(Fault(error="ThrottlingException", match=id_marker(1)))
    bodies = [echo_body(n) for n in range(3)]

    with pytest.raises(WholeBatchRetry, match="event_source_mapping --stage"):
        invoke_as_deployed(chalice_app, lambda_client, settings, stage, bodies)

    mappings = deployed_event_sources(project_copy, "dev")
    assert fix_and_verify(lambda_client, mappings, settings, fix=False) == 1
    assert fix_and_verify(lambda_client, mappings, settings, fix=True) == 0
    assert fix_and_verify(lambda_client, mappings, settings, fix=False) == 0
    response, event = invoke_as_deployed(chalice_app, lambda_client, settings, stage, bodies)
    retried = {failure["itemIdentifier"] for failure in response["batchItemFailures"]}
    assert retried == {failure_id(event["Records"][1])}


def deployed_and_fixed_up(project_copy: Path, settings) -> tuple[object, list[dict]]:
    """`chalice deploy` of the copy onto the source made from deploy/source.py, then the fix-up; the
    Lambda client and the mappings."""
    create_source(settings)
    (project_copy / ".chalice" / "policy-dev.json").write_text(
        json.dumps(function_policy(settings, AccountArns("aws", settings.region, MOTO_ACCOUNT)))
    )
    deploy(project_copy, settings)
    lambda_client = boto3.client("lambda", region_name=settings.region)
    mappings = deployed_event_sources(project_copy, "dev")
    assert fix_and_verify(lambda_client, mappings, settings, fix=True, say=lambda line: None) == 0
    return lambda_client, mappings


def function_variables(lambda_client, settings) -> dict[str, str]:
    configuration = lambda_client.get_function_configuration(FunctionName=settings.function_name)
    return configuration["Environment"]["Variables"]


# Slow tier: a real `chalice deploy` into moto takes seconds.
@pytest.mark.slow
def test_the_fix_up_tells_the_function_what_the_stack_would_of_its_sources_redelivery(moto_server, project_copy):
    """{% if cookiecutter.input_source == "kinesis" %}A stream counts no deliveries: the function gets no MAX_RECEIVE_COUNT, as from the stack.{% else %}The function's MAX_RECEIVE_COUNT is the source queue's own RedrivePolicy maxReceiveCount.{% endif %}"""
    settings = load_settings("dev")

    lambda_client, _ = deployed_and_fixed_up(project_copy, settings)

    variables = function_variables(lambda_client, settings)
    assert variables[TRIGGER_REPORTS_BATCH_ITEM_FAILURES] == "true"
{%- if cookiecutter.input_source == "kinesis" %}
    assert MAX_RECEIVE_COUNT not in variables
{%- else %}
    # The queue made from deploy/source.py redrives after queues.max_receive_count receives.
    assert variables[MAX_RECEIVE_COUNT] == str(queue_max_receive_count(settings))
    assert queue_max_receive_count(settings) == settings.queues.max_receive_count
{%- endif %}
{%- if cookiecutter.input_source != "kinesis" %}


def features_queue_url(settings) -> str:
    return boto3.client("sqs").get_queue_url(QueueName=settings.names.features)["QueueUrl"]


def queue_max_receive_count(settings) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=features_queue_url(settings), AttributeNames=["RedrivePolicy"]
    )["Attributes"]
    return int(json.loads(attributes["RedrivePolicy"])["maxReceiveCount"])


def set_redrive_policy(settings, max_receive_count: int | None) -> None:
    """Change the features queue's redrive policy after the deploy (None: remove it), as a team might."""
    sqs = boto3.client("sqs")
    policy = ""
    if max_receive_count is not None:
        dead_letters = sqs.get_queue_url(QueueName=settings.names.dead_letters)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=dead_letters, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": max_receive_count})
    sqs.set_queue_attributes(QueueUrl=features_queue_url(settings), Attributes={"RedrivePolicy": policy})


# Slow tier: a real `chalice deploy` into moto takes seconds.
@pytest.mark.slow
def test_the_check_flags_a_receive_count_that_is_not_the_queues_and_the_fix_up_follows_the_queue(
    moto_server, project_copy
):
    """The queue decides when a record has had its last delivery: a function told another count is reported."""
    settings = load_settings("dev")
    lambda_client, mappings = deployed_and_fixed_up(project_copy, settings)
    changed = settings.queues.max_receive_count + 2
    set_redrive_policy(settings, changed)

    lines: list[str] = []
    assert fix_and_verify(lambda_client, mappings, settings, fix=False, say=lines.append) == 1
    (missing,) = [line for line in lines if line.startswith("MISSING:")]
    assert f"{MAX_RECEIVE_COUNT}={settings.queues.max_receive_count}" in missing and f"after {changed}" in missing

    assert fix_and_verify(lambda_client, mappings, settings, fix=True, say=lines.append) == 0
    assert function_variables(lambda_client, settings)[MAX_RECEIVE_COUNT] == str(changed)
    assert fix_and_verify(lambda_client, mappings, settings, fix=False, say=lines.append) == 0


# Slow tier: a real `chalice deploy` into moto takes seconds.
@pytest.mark.slow
def test_a_queue_without_a_redrive_policy_leaves_the_receive_count_unset_and_the_fix_up_says_why(
    moto_server, project_copy
):
    """No redrive policy: no delivery is the last, so the handler must not act as if one were; the output says so."""
    settings = load_settings("dev")
    lambda_client, mappings = deployed_and_fixed_up(project_copy, settings)
    set_redrive_policy(settings, None)

    lines: list[str] = []
    assert fix_and_verify(lambda_client, mappings, settings, fix=False, say=lines.append) == 1
    assert fix_and_verify(lambda_client, mappings, settings, fix=True, say=lines.append) == 0

    assert MAX_RECEIVE_COUNT not in function_variables(lambda_client, settings)
    (warning,) = [line for line in lines[-2:] if "no redrive policy" in line]
    assert settings.names.features in warning and "comes back forever" in warning
{%- endif %}


def deploy(project_copy: Path, settings) -> None:
    deployed = subprocess.run(
        [*chalice_command(), "deploy", "--stage", "dev", "--no-autogen-policy"],
        cwd=project_copy,
        env={**os.environ, "AWS_DEFAULT_REGION": settings.region},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr


def invoke_as_deployed(chalice_app, lambda_client, settings, stage, bodies: list[str]) -> tuple[dict, dict]:
    """Run the handler with the environment the deployed function has now (the echo model's schema aside)."""
    configuration = lambda_client.get_function_configuration(FunctionName=settings.function_name)
    deployed = configuration["Environment"]["Variables"]
    environment = {
        **deployed,
        "MODEL_INPUT_SCHEMA": stage.environment_variables["MODEL_INPUT_SCHEMA"],
        # One request per record, so the endpoint's fault fails record 1 alone.
        "RECORDS_PER_ENDPOINT_CALL": "1",
        TRIGGER_REPORTS_BATCH_ITEM_FAILURES: deployed.get(TRIGGER_REPORTS_BATCH_ITEM_FAILURES),
    }
    with Client(chalice_app.app, stage_name="dev", project_dir=str(PROJECT_DIR)) as client:
        event = lambda_event(client, bodies)
    # Called directly: the test client would lay .chalice/config.json's variables over these.
    context = LambdaContext(configuration["FunctionName"], configuration["MemorySize"], stage.lambda_timeout * 1000)
    chalice_app.batch_processor.cache_clear()
    with patched_environ(environment):
        return chalice_app.handle_feature_events(event, context), event


def settings_env(settings) -> dict[str, str]:
    return load_stage(settings.stage).environment_variables


def test_the_fix_up_says_what_to_run_when_nothing_was_deployed(tmp_path):
    """Run before `chalice deploy`, the fix-up names the command that comes first."""
    from template_tools.deploy.cli import DeployError

    with pytest.raises(DeployError, match="chalice deploy --stage dev --no-autogen-policy"):
        deployed_event_sources(tmp_path, "dev")


def test_sys_executable_runs_chalice():
    """Packaging and deploying use the project's own Chalice, not whatever is on PATH."""
    assert subprocess.run([*chalice_command(), "--version"], capture_output=True, check=False).returncode == 0, (
        sys.executable
    )
