# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""`make deploy` / `make destroy` against moto's CloudFormation: change sets, no-op, DLQ guard.

moto cannot run the SAM transform, and its CloudFormation skips queue and topic policies and
alarms (with a warning) and returns no stack outputs after a change set. So the stack deployed
here is the packaged template without those (and without the functions, their roles and the
REST API): the queues, stream, topic or table, log groups and dashboard exactly as packaged. The
rest is checked on the template itself in test_packaging.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from template_tools.deploy.cli import DeployError
from template_tools.deploy.configuration import load_settings
from template_tools.deploy.package import package
from template_tools.deploy.progress import Poller
from template_tools.deploy.stack_deploy import StackClients, checked_template, deploy_stack, stack_status
from template_tools.deploy.stack_destroy import destroy_stack

BUCKET = "team-pipeline-artifacts"
MOTO_UNSUPPORTED = {
    "AWS::Serverless::Function",
    "AWS::Serverless::Api",
    "AWS::Lambda::Permission",
    "AWS::IAM::Role",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::TopicPolicy",
    "AWS::CloudWatch::Alarm",
}


@pytest.fixture(scope="module")
def packaged_dir(tmp_path_factory) -> Path:
    return package(load_settings("dev"), tmp_path_factory.mktemp("package")).parent


@pytest.fixture
def settings():
    return load_settings("dev", {"artifacts.bucket": BUCKET})


@pytest.fixture
def aws(aws_credentials, settings):
    with mock_aws():
        clients = StackClients.for_region(settings.region)
        location = (
            {}
            if settings.region == "us-east-1"
            else {"CreateBucketConfiguration": {"LocationConstraint": settings.region}}
        )
        clients.s3.create_bucket(Bucket=BUCKET, **location)
        yield clients


@pytest.fixture
def moto_package(packaged_dir, tmp_path) -> Path:
    """The packaged template minus what moto's CloudFormation cannot create."""
    template = json.loads((packaged_dir / "sam.json").read_text())
    del template["Transform"], template["Outputs"]
    template["Resources"] = {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] not in MOTO_UNSUPPORTED
    }
    out = tmp_path / "package"
    out.mkdir()
    (out / "sam.json").write_text(json.dumps(template))
    return out


def quiet_poller() -> Poller:
    return Poller(poll_seconds=0, sleep=lambda _: None, say=lambda _: None)


def test_deploy_creates_the_stack_then_a_rerun_changes_nothing(aws, settings, moto_package):
    """`make deploy` is idempotent: the second run ends at an empty change set."""
    lines: list[str] = []

    deploy_stack(settings, aws, moto_package, quiet_poller(), lines.append)
    again = deploy_stack(settings, aws, moto_package, quiet_poller(), lines.append)

    assert stack_status(aws.cloudformation, settings.stack_name) == "CREATE_COMPLETE"
    created = aws.cloudformation.describe_stack_resources(StackName=settings.stack_name)["StackResources"]
    packaged = json.loads((moto_package / "sam.json").read_text())["Resources"]
    assert {resource["LogicalResourceId"] for resource in created} == set(packaged)
    dead_letters = aws.sqs.get_queue_url(QueueName=settings.names.dead_letters)["QueueUrl"]
    attributes = aws.sqs.get_queue_attributes(QueueUrl=dead_letters, AttributeNames=["All"])["Attributes"]
    assert attributes["SqsManagedSseEnabled"] == "true"
    assert again == {} and any(line.startswith("No changes") for line in lines)


def test_destroy_refuses_while_dead_letters_wait_and_says_how_many(aws, settings, moto_package):
    """Dead letters are often the only copy of a record: deleting them takes FORCE=1."""
    deploy_stack(settings, aws, moto_package, quiet_poller(), lambda _: None)
    dead_letters = aws.sqs.get_queue_url(QueueName=settings.names.dead_letters)["QueueUrl"]
    # A FIFO queue needs a group and a deduplication id; a standard queue takes no such fields.
    fifo = {"MessageGroupId": "user-1"} if settings.names.dead_letters.endswith(".fifo") else {}
    for number in range(3):
        ids = {"MessageDeduplicationId": f"dead-letter-{number}"} if fifo else {}
        aws.sqs.send_message(QueueUrl=dead_letters, MessageBody=json.dumps({"n": number}), **fifo, **ids)

    with pytest.raises(DeployError, match="holds 3 message"):
        destroy_stack(settings, aws, quiet_poller(), say=lambda _: None)
    assert stack_status(aws.cloudformation, settings.stack_name) == "CREATE_COMPLETE"

    lines: list[str] = []
    destroy_stack(settings, aws, quiet_poller(), force=True, say=lines.append)
    assert stack_status(aws.cloudformation, settings.stack_name) is None
    assert any(settings.names.predictions in line for line in lines), "says what happens to the predictions"
    region = settings.region
    assert boto3.client("sqs", region_name=region).list_queues().get("QueueUrls", []) == []
    assert boto3.client("kinesis", region_name=region).list_streams()["StreamNames"] == []
    assert boto3.client("sns", region_name=region).list_topics()["Topics"] == []
    assert boto3.client("dynamodb", region_name=region).list_tables()["TableNames"] == []


def test_destroy_without_a_stack_says_so(aws, settings):
    """Destroying twice is not an error."""
    lines: list[str] = []
    destroy_stack(settings, aws, quiet_poller(), say=lines.append)
    assert lines[0].startswith("No stack")


def test_deploy_refuses_a_package_made_for_another_stage(packaged_dir):
    """The package names its stage's resources, so deploying it as another stage would cross them."""
    with pytest.raises(DeployError, match="another stage"):
        checked_template(load_settings("prod"), packaged_dir)
    checked_template(load_settings("dev"), packaged_dir)


def test_deploy_uploads_the_code_zip_by_hash(aws, settings, packaged_dir, moto_package):
    """A code zip is uploaded under its content hash, so repeats cost nothing and versions never collide."""
    shutil.copy(packaged_dir / "deployment.zip", moto_package / "deployment.zip")
    template = json.loads((packaged_dir / "sam.json").read_text())
    # The real template, only to see the CodeUri rewrite; the stack itself cannot run in moto.
    from template_tools.deploy.artifacts import content_hash, upload

    key = f"{settings.artifacts_prefix}/dev/pipeline/{content_hash(packaged_dir / 'deployment.zip')}-deployment.zip"
    uri = upload(aws.s3, packaged_dir / "deployment.zip", BUCKET, key, lambda _: None)
    assert aws.s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] > 0
    assert (
        uri == f"s3://{BUCKET}/{key}"
        and template["Resources"]["HandleFeatureEvents"]["Properties"]["CodeUri"] == "./deployment.zip"
    )
