# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""`make package`: the packaged template (Chalice's plus the merge template) is safe to deploy.

Everything here reads package/sam.json as CloudFormation will receive it, and runs cfn-lint on it
(with the SAM transform), for both stages. Packaging must not call AWS: the AWS endpoint points at
a closed port while it runs.
"""

from __future__ import annotations

import copy
import fcntl
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint

from chalicelib.template_runtime.settings import TRIGGER_REPORTS_BATCH_ITEM_FAILURES
from template_tools.deploy import destination, source
from template_tools.deploy.configuration import load_settings, load_stage
from template_tools.deploy.package import package
from template_tools.deploy.queues import DEAD_LETTER_QUEUE
from template_tools.deploy.template_checks import (
    WILDCARD_ALLOWED_ACTIONS,
    expanded_template_problems,
    feature_event_sources,
    iam_statements,
    resources_of_type,
    template_problems,
    wildcard_resources,
)
{%- if cookiecutter.xray_tracing == "active" %}
from template_tools.deploy.tracing import TRACING_ACTIONS
{%- endif %}
from template_tools.stage import PROJECT_DIR

# cfn-lint warnings this template accepts on purpose, by rule id, with the reason. None today.
ACCEPTED_WARNINGS: dict[str, str] = {}
HANDLER = "HandleFeatureEvents"
READ_API = "APIHandler"
LOG_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}
# Every function writes its logs{% if cookiecutter.xray_tracing == "active" %} and sends its X-Ray traces{% endif %}.
COMMON_ACTIONS = LOG_ACTIONS{% if cookiecutter.xray_tracing == "active" %} | TRACING_ACTIONS{% endif %}
# Exactly what the handler's role may do, by choice of source and of destination: least privilege
# written out, not derived from the code under test.
SOURCE_ACTIONS = {
    "SQS": {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"},
    "Kinesis": {
        "kinesis:DescribeStream",
        "kinesis:DescribeStreamSummary",
        "kinesis:GetRecords",
        "kinesis:GetShardIterator",
        "kinesis:ListShards",
    },
}
DESTINATION_ACTIONS = {
    "PREDICTIONS_QUEUE_NAME": {"sqs:GetQueueUrl", "sqs:SendMessage"},
    "PREDICTIONS_TOPIC_NAME": {"sns:Publish"},
    "PREDICTIONS_STREAM_NAME": {"kinesis:PutRecords"},
    "PREDICTIONS_TABLE_NAME": {"dynamodb:PutItem"},
}
SOURCE_ALARM_METRICS = {"SQS": {"ApproximateAgeOfOldestMessage"}, "Kinesis": {"IteratorAge"}}
DESTINATION_ALARM_METRICS = {
    "PREDICTIONS_QUEUE_NAME": set(),
    "PREDICTIONS_TOPIC_NAME": {"NumberOfNotificationsFailed"},
    "PREDICTIONS_STREAM_NAME": {"WriteProvisionedThroughputExceeded"},
    "PREDICTIONS_TABLE_NAME": {"ThrottledRequests", "5XXError"},
}


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
        # One packaging at a time: the stages share the project's .chalice/deployments cache, and
        # two test workers writing one cached zip at once leave it corrupt.
        with (PROJECT_DIR / ".chalice" / "package.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = package(settings, out)
    return {"settings": settings, "path": path, "template": json.loads(path.read_text())}


def the_trigger(template: dict[str, Any]) -> dict[str, Any]:
    (trigger,) = [event for event_type, event in feature_event_sources(template) if event_type == source.EVENT_TYPE]
    return trigger


# Slow tier: cfn-lint takes about a second a template; the contract checks below stay fast.
@pytest.mark.slow
def test_cfn_lint_passes_on_the_packaged_template(packaged):
    """cfn-lint knows CloudFormation's and SAM's rules; `make deploy` runs it too, so a failure here fails a deploy."""
    matches = lint(packaged["path"].read_text(), regions=[packaged["settings"].region])
    errors = [str(m) for m in matches if m.rule.id.startswith("E")]
    warnings = [str(m) for m in matches if m.rule.id.startswith("W") and m.rule.id not in ACCEPTED_WARNINGS]
    assert errors == [] and warnings == []


def test_the_trigger_reports_batch_item_failures(packaged):
    """Without it Lambda ignores the handler's failure list; Chalice never sets it (aws/chalice#2029)."""
    event = the_trigger(packaged["template"])
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # Every setting the merge template adds survived Chalice's merge, including the reference to
    # the stack's own queue or stream under Chalice's Fn::Sub key.
    assert event == {**event, **source.event_source_properties(packaged["settings"])}


def test_the_packaged_function_knows_its_trigger_acts_on_a_failure_list(packaged):
    """The handler answers with a failure list only when told so; the stage's own variables survive the merge."""
    variables = packaged["template"]["Resources"][HANDLER]["Properties"]["Environment"]["Variables"]
    assert variables[TRIGGER_REPORTS_BATCH_ITEM_FAILURES] == "true"
    assert variables["ENDPOINT_NAME"] == packaged["settings"].endpoint.name


def test_the_trigger_keeps_the_stage_batch_settings(packaged):
    """Batch size and window come from the stage, through app.py's decorator, not from the merge template."""
    env = load_stage(packaged["settings"].stage).environment_variables
    event = the_trigger(packaged["template"])
    assert event["BatchSize"] == int(env["TRIGGER_BATCH_SIZE"])
    assert event.get("MaximumBatchingWindowInSeconds", 0) == int(env["TRIGGER_BATCHING_WINDOW_SECONDS"])
{%- if cookiecutter.input_source == "kinesis" %}
    # A Kinesis trigger runs one invocation per shard and starts from the oldest record it holds.
    assert event["StartingPosition"] == "TRIM_HORIZON"
{%- else %}
    # An SQS trigger caps its concurrency.
    assert event["ScalingConfig"] == {"MaximumConcurrency": int(env["TRIGGER_MAXIMUM_CONCURRENCY"])}
{%- endif %}


def test_records_that_keep_failing_end_in_the_dead_letter_queue(packaged):
    """Nothing is dropped without a trace: SQS redrives there, Kinesis sends where the failed batch is."""
    template, settings = packaged["template"], packaged["settings"]
    event, dead_letters = the_trigger(template), {"Fn::GetAtt": [DEAD_LETTER_QUEUE, "Arn"]}
    if source.EVENT_TYPE == "Kinesis":
        assert event["DestinationConfig"] == {"OnFailure": {"Destination": dead_letters}}
        assert event["BisectBatchOnFunctionError"] is True
        assert event["MaximumRetryAttempts"] == settings.queues.max_receive_count - 1
        assert 60 <= event["MaximumRecordAgeInSeconds"] < settings.streams.retention_hours * 3600
    else:
        features = template["Resources"][source.FEATURES]["Properties"]
        assert features["RedrivePolicy"] == {
            "deadLetterTargetArn": dead_letters,
            "maxReceiveCount": settings.queues.max_receive_count,
        }


def test_a_fifo_source_keeps_fifo_from_features_to_dead_letters(packaged):
    """Order per user holds only if every queue on the way is FIFO, and AWS refuses a FIFO queue's standard DLQ."""
    template, settings = packaged["template"], packaged["settings"]
    fifo = settings.names.features.endswith(".fifo")
    queues = {
        q["Properties"]["QueueName"]: q["Properties"] for q in resources_of_type(template, "AWS::SQS::Queue").values()
    }
    assert {name: properties.get("FifoQueue", False) for name, properties in queues.items()} == {
        name: name.endswith(".fifo") for name in queues
    }
    assert settings.names.dead_letters.endswith(".fifo") == fifo
    if fifo:
        features, event = queues[settings.names.features], the_trigger(template)
        # Producers give each event's id as its deduplication id (see deploy/source.py).
        assert features["ContentBasedDeduplication"] is False
        assert event["BatchSize"] <= 10 and event["MaximumBatchingWindowInSeconds"] == 0


def test_the_runtime_is_the_chosen_one_whatever_python_packaged_it(packaged):
    """Chalice writes the Python that ran `chalice package`; every function must run the pinned runtime."""
    functions = resources_of_type(packaged["template"], "AWS::Serverless::Function")
    assert {function["Properties"]["Runtime"] for function in functions.values()} == {
        packaged["settings"].lambda_runtime
    }


def test_every_iam_statement_names_this_pipelines_resources(packaged):
    """Least privilege: each role may do exactly what its function calls, on this stack's resources only."""
    template, settings = packaged["template"], packaged["settings"]
    statements = list(iam_statements(template))
    assert statements, "the roles have policies"
    functions = resources_of_type(template, "AWS::Serverless::Function").values()
    named_log_groups = {f":log-group:/aws/lambda/{function['Properties']['FunctionName']}:*" for function in functions}
    for _, statement in statements:
        assert statement["Effect"] == "Allow"
        assert not any("*" in action for action in statement["Action"])
        if wildcard_resources(statement):
            assert set(statement["Action"]) <= WILDCARD_ALLOWED_ACTIONS, statement
            continue
        for resource in statement["Resource"]:
            if "Fn::GetAtt" in resource:
                assert resource["Fn::GetAtt"][0] in template["Resources"]
            else:
                arn = resource["Fn::Sub"]
                assert arn.endswith(f":endpoint/{settings.endpoint.name.lower()}") or any(
                    arn.endswith(group) for group in named_log_groups
                ), arn
    granted = {
        role_id: {action for owner, statement in statements if owner == role_id for action in statement["Action"]}
        for role_id in resources_of_type(template, "AWS::IAM::Role")
    }
    handler_role = template["Resources"][HANDLER]["Properties"]["Role"]["Fn::GetAtt"][0]
    assert granted[handler_role] == {
        "sqs:GetQueueUrl",
        "sqs:SendMessage",
        "sagemaker:InvokeEndpoint",
        *COMMON_ACTIONS,
        *SOURCE_ACTIONS[source.EVENT_TYPE],
        *DESTINATION_ACTIONS[destination.PREDICTIONS_VARIABLE],
    }
    read_api = template["Resources"].get(READ_API)
    if read_api:
        # The read API only reads: its own role, never the handler's.
        api_role = read_api["Properties"]["Role"]["Fn::GetAtt"][0]
        assert api_role != handler_role and granted[api_role] == {"dynamodb:GetItem", *COMMON_ACTIONS}
    assert set(granted) == {handler_role, *([api_role] if read_api else [])}


def test_the_app_has_a_read_api_only_with_a_table(packaged):
    """The read API exists for the DynamoDB destination alone (registered by app.py)."""
    functions = set(resources_of_type(packaged["template"], "AWS::Serverless::Function"))
    with_table = destination.PREDICTIONS_VARIABLE == "PREDICTIONS_TABLE_NAME"
    assert functions == ({HANDLER, READ_API} if with_table else {HANDLER})


def test_every_queue_is_encrypted_tls_only_and_the_dead_letters_outlive_the_source(packaged):
    """Queues hold users' records: encrypted at rest, no plain-HTTP access, dead letters kept longest."""
    template, settings = packaged["template"], packaged["settings"]
    queues = {
        q["Properties"]["QueueName"]: q["Properties"] for q in resources_of_type(template, "AWS::SQS::Queue").values()
    }
    expected = {settings.names.dead_letters}
    expected |= {settings.names.features} if source.EVENT_TYPE == "SQS" else set()
    expected |= {settings.names.predictions} if destination.PREDICTIONS_VARIABLE == "PREDICTIONS_QUEUE_NAME" else set()
    assert set(queues) == expected
    assert all(properties["SqsManagedSseEnabled"] is True for properties in queues.values())
    protected = [
        p["Properties"]["Queues"][0]["Ref"] for p in resources_of_type(template, "AWS::SQS::QueuePolicy").values()
    ]
    assert sorted(protected) == sorted(resources_of_type(template, "AWS::SQS::Queue"))
    dead_letters = queues[settings.names.dead_letters]
    assert all(
        dead_letters["MessageRetentionPeriod"] > properties["MessageRetentionPeriod"]
        for name, properties in queues.items()
        if name != settings.names.dead_letters
    )
    # No destination queue has a dead-letter queue of ours: its consumers choose their own
    # retries, and it would mix their failures into the pipeline's alarm.
    assert [name for name, properties in queues.items() if "RedrivePolicy" in properties] == (
        [settings.names.features] if source.EVENT_TYPE == "SQS" else []
    )


def test_streams_topics_and_tables_are_encrypted_on_demand_and_recoverable(packaged):
    """What is not a queue is still encrypted with a key nobody has to manage, and sized by AWS."""
    template = packaged["template"]
    for stream in resources_of_type(template, "AWS::Kinesis::Stream").values():
        assert stream["Properties"]["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
        assert stream["Properties"]["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}
    for topic in resources_of_type(template, "AWS::SNS::Topic").values():
        assert topic["Properties"]["KmsMasterKeyId"] == "alias/aws/sns"
    key = load_stage(packaged["settings"].stage).environment_variables.get("PARTITION_KEY_FIELD")
    for table in resources_of_type(template, "AWS::DynamoDB::Table").values():
        properties = table["Properties"]
        assert properties["BillingMode"] == "PAY_PER_REQUEST"
        assert properties["KeySchema"] == [{"AttributeName": key, "KeyType": "HASH"}]
        assert properties["AttributeDefinitions"] == [{"AttributeName": key, "AttributeType": "S"}]
        assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
        assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    kinds = {
        "PREDICTIONS_QUEUE_NAME": "AWS::SQS::Queue",
        "PREDICTIONS_TOPIC_NAME": "AWS::SNS::Topic",
        "PREDICTIONS_STREAM_NAME": "AWS::Kinesis::Stream",
        "PREDICTIONS_TABLE_NAME": "AWS::DynamoDB::Table",
    }
    assert template["Resources"][destination.PREDICTIONS]["Type"] == kinds[destination.PREDICTIONS_VARIABLE]


def test_alarms_and_a_dashboard_watch_the_pipeline(packaged):
    """Each way the pipeline can fall behind or lose records has an alarm; each function has its log group."""
    template = packaged["template"]
    metrics = {a["Properties"]["MetricName"] for a in resources_of_type(template, "AWS::CloudWatch::Alarm").values()}
    assert metrics == {
        "ApproximateNumberOfMessagesVisible",
        "Errors",
        "Invocation5XXErrors",
        # The handler's own counts: records whose endpoint does not exist, dead letters refused.
        "EndpointNotFound",
        "DeadLetterRefused",
        "ModelLatency",
        *SOURCE_ALARM_METRICS[source.EVENT_TYPE],
        *DESTINATION_ALARM_METRICS[destination.PREDICTIONS_VARIABLE],
    }
    assert len(resources_of_type(template, "AWS::CloudWatch::Dashboard")) == 1
    log_groups = {g["Properties"]["LogGroupName"] for g in resources_of_type(template, "AWS::Logs::LogGroup").values()}
    functions = resources_of_type(template, "AWS::Serverless::Function").values()
    assert log_groups == {f"/aws/lambda/{function['Properties']['FunctionName']}" for function in functions}
    assert f"/aws/lambda/{packaged['settings'].function_name}" in log_groups


def test_the_checks_refuse_a_template_without_report_batch_item_failures_or_with_a_wildcard(packaged):
    """The checks guard every deploy, so they must catch the two ways a template can go wrong silently."""
    settings = packaged["settings"]
    assert template_problems(packaged["template"], settings) == []
    broken = copy.deepcopy(packaged["template"])
    del the_trigger(broken)["FunctionResponseTypes"]
    role = broken["Resources"]["DefaultRole"]
    role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]["Resource"] = "*"

    problems = template_problems(broken, settings)

    assert any("ReportBatchItemFailures" in p for p in problems)
    assert any("not on named resources" in p for p in problems)


@pytest.mark.parametrize("batch_size", ["notanumber", 20000], ids=["not-a-number", "over-the-limit"])
def test_the_checks_refuse_an_event_source_that_only_sams_expansion_shows_wrong(packaged, batch_size):
    """cfn-lint does not check a SAM function's Events; SAM's expansion and cfn-lint on its result do."""
    broken = copy.deepcopy(packaged["template"])
    the_trigger(broken)["BatchSize"] = batch_size

    problems = expanded_template_problems(broken, packaged["settings"].region)

    assert [p for p in problems if "BatchSize" in p], problems


def test_the_merge_template_is_generated_per_stage():
    """One merge template per stage: dev names its resources with -dev, prod without."""
    from template_tools.deploy.merge_template import merge_template

    dev, prod = merge_template(load_settings("dev")), merge_template(load_settings("prod"))
    assert dev["Resources"][source.FEATURES]["Properties"] != prod["Resources"][source.FEATURES]["Properties"]
    assert load_settings("dev").names.features.removesuffix(".fifo").endswith("-dev")
    assert not load_settings("prod").names.features.removesuffix(".fifo").endswith("-dev")


def test_packaging_writes_the_template_and_a_code_zip_without_the_tooling(packaged):
    """The Lambda package holds the app and the model input schema: no tooling, no model code or artifacts."""
    out: Path = packaged["path"].parent
    assert {"sam.json", "deployment.zip", "merge-template.json"} <= {p.name for p in out.iterdir()}
    with zipfile.ZipFile(out / "deployment.zip") as code:
        names = code.namelist()
        schema = code.read("model/code/input.schema.json")
    top_level = {name.split("/")[0] for name in names}
    assert {"app.py", "chalicelib"} <= top_level
    assert not top_level & {"deploy", "template_tools", "sagemaker", "tests"}, "tooling never ships to Lambda"
    # The handler reads the schema at the same path as in the project; nothing else of model/ ships.
    assert [name for name in names if name.startswith("model/")] == ["model/code/input.schema.json"]
    assert schema == (PROJECT_DIR / "model" / "code" / "input.schema.json").read_bytes()
