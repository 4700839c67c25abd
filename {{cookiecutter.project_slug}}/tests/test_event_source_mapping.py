"""The plain `chalice deploy` path, against moto server: deploy, then the ReportBatchItemFailures fix-up.

`chalice deploy` really runs (as a subprocess, pointed at moto by AWS_ENDPOINT_URL), so the
mapping the fix-up changes is the one Chalice created and recorded in .chalice/deployed/.
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
from moto.server import ThreadedMotoServer

from deploy.event_source_mapping import deployed_sqs_mappings, report_batch_item_failures
from deploy.iam_policy import AccountArns, function_policy
from deploy.package import chalice_command
from deploy.settings import PROJECT_DIR, load_settings, load_stage

MOTO_ACCOUNT = "123456789012"


@pytest.fixture
def moto_server(aws_credentials, monkeypatch):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def project_copy(tmp_path) -> Path:
    """The app, its libraries and its config, where `chalice deploy` may write .chalice/deployed/."""
    copy = tmp_path / "project"
    copy.mkdir()
    for name in ("app.py", "requirements.txt"):
        shutil.copy(PROJECT_DIR / name, copy / name)
    shutil.copytree(PROJECT_DIR / "chalicelib", copy / "chalicelib", ignore=shutil.ignore_patterns("__pycache__"))
    (copy / ".chalice").mkdir()
    shutil.copy(PROJECT_DIR / ".chalice" / "config.json", copy / ".chalice" / "config.json")
    return copy


def test_chalice_deploy_then_the_fix_up_turns_on_report_batch_item_failures(moto_server, project_copy):
    settings = load_settings("dev")
    boto3.client("sqs", region_name=settings.region).create_queue(QueueName=settings.queues.features)
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
    mappings = deployed_sqs_mappings(project_copy, "dev")
    uuid = mappings[0]["event_uuid"]
    assert not lambda_client.get_event_source_mapping(UUID=uuid).get("FunctionResponseTypes"), (
        "Chalice itself does not set it (aws/chalice#2029); if it now does, the fix-up can go"
    )
    lines: list[str] = []
    assert report_batch_item_failures(lambda_client, mappings, fix=False, say=lines.append) == [uuid]

    assert report_batch_item_failures(lambda_client, mappings, fix=True, say=lines.append) == []

    mapping = lambda_client.get_event_source_mapping(UUID=uuid)
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
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
    from deploy.cli import DeployError

    with pytest.raises(DeployError, match="chalice deploy --stage dev --no-autogen-policy"):
        deployed_sqs_mappings(tmp_path, "dev")


def test_sys_executable_runs_chalice():
    assert subprocess.run([*chalice_command(), "--version"], capture_output=True, check=False).returncode == 0, (
        sys.executable
    )
