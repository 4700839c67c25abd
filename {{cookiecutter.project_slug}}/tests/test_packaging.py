"""`make package`: the packaged template (Chalice's plus the merge template) is safe to deploy.

Everything here reads package/sam.json as CloudFormation will receive it, and runs cfn-lint on it
(with the SAM transform), for both stages. Packaging must not call AWS: the AWS endpoint points at
a closed port while it runs.
"""

from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint

from deploy.package import package
from deploy.settings import load_settings, load_stage
from deploy.template_checks import (
    iam_statements,
    resources_of_type,
    sqs_event_sources,
    template_problems,
    wildcard_resources,
)

# cfn-lint warnings this template accepts on purpose, by rule id, with the reason. None today.
ACCEPTED_WARNINGS: dict[str, str] = {}


@pytest.fixture(scope="module", params=["dev", "prod"])
def packaged(request, tmp_path_factory) -> dict[str, Any]:
    stage = request.param
    settings = load_settings(stage)
    out = tmp_path_factory.mktemp(f"package-{stage}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: any AWS call would fail
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.delenv("AWS_PROFILE", raising=False)
        path = package(settings, out)
    return {"settings": settings, "path": path, "template": json.loads(path.read_text())}


def test_cfn_lint_passes_on_the_packaged_template(packaged):
    matches = lint(packaged["path"].read_text(), regions=[packaged["settings"].region])
    errors = [str(m) for m in matches if m.rule.id.startswith("E")]
    warnings = [str(m) for m in matches if m.rule.id.startswith("W") and m.rule.id not in ACCEPTED_WARNINGS]
    assert errors == [] and warnings == []


def test_the_trigger_reports_batch_item_failures(packaged):
    sources = list(sqs_event_sources(packaged["template"]))
    assert len(sources) == 1
    _, _, event = sources[0]
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert event["Queue"] == {"Fn::Sub": "${FeaturesQueue.Arn}"}, "the merge replaced Chalice's queue reference"


def test_the_trigger_keeps_the_stage_batch_settings(packaged):
    env = load_stage(packaged["settings"].stage).environment_variables
    _, _, event = next(sqs_event_sources(packaged["template"]))
    assert event["BatchSize"] == int(env["TRIGGER_BATCH_SIZE"])
    assert event["MaximumBatchingWindowInSeconds"] == int(env["TRIGGER_BATCHING_WINDOW_SECONDS"])
    assert event["ScalingConfig"] == {"MaximumConcurrency": int(env["TRIGGER_MAXIMUM_CONCURRENCY"])}


def test_the_runtime_is_the_chosen_one_whatever_python_packaged_it(packaged):
    (function,) = resources_of_type(packaged["template"], "AWS::Serverless::Function").values()
    assert function["Properties"]["Runtime"] in ("python3.12", "python3.13")
    assert function["Properties"]["Runtime"] == packaged["settings"].lambda_runtime


def test_every_iam_statement_names_this_pipelines_resources(packaged):
    template = packaged["template"]
    statements = list(iam_statements(template))
    assert statements, "the role has a policy"
    queue_ids = set(resources_of_type(template, "AWS::SQS::Queue"))
    for _, statement in statements:
        assert statement["Effect"] == "Allow"
        assert not any("*" in action for action in statement["Action"])
        assert wildcard_resources(statement) == [], statement  # no documented exception in this stack
        for resource in statement["Resource"]:
            if "Fn::GetAtt" in resource:
                assert resource["Fn::GetAtt"][0] in queue_ids
            else:
                arn = resource["Fn::Sub"]
                settings = packaged["settings"]
                assert arn.endswith(f":endpoint/{settings.endpoint.name.lower()}") or arn.endswith(
                    f":log-group:/aws/lambda/{settings.function_name}:*"
                ), arn
    granted = {action for _, statement in statements for action in statement["Action"]}
    assert granted == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
        "sqs:SendMessage",
        "sagemaker:InvokeEndpoint",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }


def test_every_queue_is_encrypted_tls_only_and_redriven_as_its_role_needs(packaged):
    template, settings = packaged["template"], packaged["settings"]
    queues = {
        q["Properties"]["QueueName"]: q["Properties"] for q in resources_of_type(template, "AWS::SQS::Queue").values()
    }
    assert set(queues) == {settings.queues.features, settings.queues.predictions, settings.queues.dead_letters}
    assert all(properties["SqsManagedSseEnabled"] is True for properties in queues.values())
    protected = [
        p["Properties"]["Queues"][0]["Ref"] for p in resources_of_type(template, "AWS::SQS::QueuePolicy").values()
    ]
    assert sorted(protected) == sorted(resources_of_type(template, "AWS::SQS::Queue"))

    features, dead_letters = queues[settings.queues.features], queues[settings.queues.dead_letters]
    assert features["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
        "maxReceiveCount": settings.queues.max_receive_count,
    }
    assert dead_letters["MessageRetentionPeriod"] > features["MessageRetentionPeriod"]
    assert dead_letters["RedriveAllowPolicy"]["redrivePermission"] == "byQueue"
    (function,) = resources_of_type(template, "AWS::Serverless::Function").values()
    assert features["VisibilityTimeout"] >= 6 * function["Properties"]["Timeout"]
    # The predictions queue is a destination: its consumers choose their own retries, and a
    # dead-letter queue of ours would mix their failures into the pipeline's alarm.
    assert "RedrivePolicy" not in queues[settings.queues.predictions]


def test_alarms_and_a_dashboard_watch_the_pipeline(packaged):
    template = packaged["template"]
    metrics = {a["Properties"]["MetricName"] for a in resources_of_type(template, "AWS::CloudWatch::Alarm").values()}
    assert metrics == {
        "ApproximateNumberOfMessagesVisible",
        "ApproximateAgeOfOldestMessage",
        "Errors",
        "Invocation5XXErrors",
        "ModelLatency",
    }
    assert len(resources_of_type(template, "AWS::CloudWatch::Dashboard")) == 1
    (log_group,) = resources_of_type(template, "AWS::Logs::LogGroup").values()
    assert log_group["Properties"]["LogGroupName"] == f"/aws/lambda/{packaged['settings'].function_name}"


def test_the_checks_refuse_a_template_without_report_batch_item_failures_or_with_a_wildcard(packaged):
    settings = packaged["settings"]
    assert template_problems(packaged["template"], settings) == []
    broken = copy.deepcopy(packaged["template"])
    _, _, event = next(sqs_event_sources(broken))
    del event["FunctionResponseTypes"]
    role = next(iter(resources_of_type(broken, "AWS::IAM::Role").values()))
    role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]["Resource"] = "*"

    problems = template_problems(broken, settings)

    assert any("ReportBatchItemFailures" in p for p in problems)
    assert any("not on named resources" in p for p in problems)


def test_the_merge_template_is_generated_per_stage():
    from deploy.merge_template import merge_template

    dev, prod = merge_template(load_settings("dev")), merge_template(load_settings("prod"))
    assert dev["Resources"]["FeaturesQueue"]["Properties"]["QueueName"].endswith("-dev")
    assert not prod["Resources"]["FeaturesQueue"]["Properties"]["QueueName"].endswith("-dev")


def test_packaging_writes_the_template_and_a_code_zip_without_the_tooling(packaged):
    out: Path = packaged["path"].parent
    assert {"sam.json", "deployment.zip", "merge-template.json"} <= {p.name for p in out.iterdir()}
    with zipfile.ZipFile(out / "deployment.zip") as code:
        top_level = {name.split("/")[0] for name in code.namelist()}
    assert {"app.py", "chalicelib"} <= top_level
    tooling = load_stage.__module__.split(".")[0]
    assert not top_level & {"deploy", tooling, "sagemaker", "tests", "model"}, "deploy tooling never ships to Lambda"
