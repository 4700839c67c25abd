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

from template_tools.deploy import source
from template_tools.deploy.configuration import PROJECT_DIR, load_settings, load_stage
from template_tools.deploy.event_source_mapping import configure_event_sources, deployed_event_sources
from template_tools.deploy.iam_policy import AccountArns, function_policy
from template_tools.deploy.package import chalice_command

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
