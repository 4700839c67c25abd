# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""What a packaged template must hold before it may be deployed, checked on the template itself.

Used by `make package` (which refuses to write a template that fails) and by the tests. Each
check reads the final template, after Chalice's merge, because that is what CloudFormation runs.

cfn-lint checks a SAM function's own properties but not its `Events`, which SAM turns into event
source mappings: a `BatchSize` of "notanumber" passes it. So the template is also expanded as
CloudFormation's SAM transform would (aws-sam-translator, offline) and cfn-lint checks the result.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from . import destination, source
from .merge_template import FUNCTION
from .settings import RUNTIMES, DeploySettings

try:
    from .tracing import TRACING_ACTIONS
except ModuleNotFoundError as missing:
    # deploy/tracing.py exists only in a project with X-Ray tracing active: without it no X-Ray
    # action is allowed on "*".
    if missing.name != f"{__package__}.tracing":
        raise
    TRACING_ACTIONS = frozenset()

# Actions without resource-level permissions, which may use "*"; the source's and destination's
# modules say why they need each (the SageMaker execution role in deploy/execution_role.py has
# two more, outside the stack).
WILDCARD_ALLOWED_ACTIONS: frozenset[str] = source.WILDCARD_ACTIONS | destination.WILDCARD_ACTIONS | TRACING_ACTIONS
# Log streams live under their group: `log-group:NAME:*` names one group's streams only.
LOG_STREAM_SUFFIX = ":*"
# SAM expands only a function whose code is on S3; `make deploy` uploads the zip and puts its URI
# here, so the expansion is checked with a stand-in.
CODE_URI_STAND_IN = "s3://code-bucket/deployment.zip"


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """The template's resources of one type, by logical id."""
    return {
        logical_id: resource
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") == resource_type
    }


def feature_event_sources(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event type, event properties) for every trigger of the handler (SQS or Kinesis)."""
    handler = template.get("Resources", {}).get(FUNCTION, {})
    for event in handler.get("Properties", {}).get("Events", {}).values():
        yield event.get("Type", ""), event.get("Properties", {})


def iam_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(role or policy id, statement) for every identity-based statement the template grants."""
    for role_id, role in resources_of_type(template, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                yield role_id, statement
    for policy_id, policy in resources_of_type(template, "AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            yield policy_id, statement


def wildcard_resources(statement: dict[str, Any]) -> list[str]:
    """The statement's resources that match more than one named resource (or its log streams)."""
    resources = statement.get("Resource", [])
    found = []
    for resource in resources if isinstance(resources, list) else [resources]:
        if isinstance(resource, dict) and set(resource) == {"Fn::GetAtt"}:
            continue  # the ARN of one resource in this stack
        arn = resource.get("Fn::Sub") if isinstance(resource, dict) else resource
        if not isinstance(arn, str):
            found.append(json.dumps(resource))
            continue
        named = arn.removesuffix(LOG_STREAM_SUFFIX) if ":log-group:" in arn else arn
        if "*" in named:
            found.append(arn)
    return found


def template_problems(template: dict[str, Any], settings: DeploySettings) -> list[str]:
    """Every reason the template must not be deployed; empty when it may."""
    return [
        *_trigger_problems(template, settings),
        *_iam_problems(template),
        *_queue_problems(template),
        *_encryption_problems(template),
    ]


def expanded_template(template: dict[str, Any], region: str) -> dict[str, Any]:
    """The template as CloudFormation's SAM transform expands it in `region`, without calling AWS.

    Raises samtranslator's InvalidDocumentException when SAM would refuse it.
    """
    # Imported here: SAM's translator takes about a second to import, and only packaging needs it.
    import boto3
    from samtranslator.metrics.metrics import DummyMetricsPublisher, Metrics
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    sam = copy.deepcopy(template)
    for function in resources_of_type(sam, "AWS::Serverless::Function").values():
        function["Properties"]["CodeUri"] = CODE_URI_STAND_IN
    # The session only tells SAM the region (and so the partition); no request is made. The
    # metrics go nowhere, and are flushed so SAM does not warn about them at exit.
    metrics = Metrics("ServerlessTransform", DummyMetricsPublisher())
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region), metrics=metrics)
    try:
        return translator.translate(sam, parameter_values={}, get_managed_policy_map=_no_managed_policies)
    finally:
        metrics.publish()


def _no_managed_policies() -> dict[str, str]:
    # Chalice's roles carry their policies inline: SAM never needs to look up a managed policy here.
    raise RuntimeError("the template names an AWS managed policy; SAM's expansion would ask IAM for it")


def expanded_template_problems(template: dict[str, Any], region: str) -> list[str]:
    """What SAM's expansion refuses, then cfn-lint's errors and warnings on the expanded template."""
    from cfnlint.api import lint
    from samtranslator.model.exceptions import InvalidDocumentException

    try:
        expanded = expanded_template(template, region)
    except InvalidDocumentException as error:
        return [f"SAM cannot expand the template: {cause.message}" for cause in error.causes]
    return [
        f"after SAM's expansion, cfn-lint {match.rule.id} at {'/'.join(map(str, match.path))}: {match.message}"
        for match in lint(json.dumps(expanded), regions=[region])
        if match.rule.id.startswith(("E", "W"))
    ]


def _trigger_problems(template: dict[str, Any], settings: DeploySettings) -> list[str]:
    problems = []
    functions = resources_of_type(template, "AWS::Serverless::Function")
    if not functions:
        problems.append("the template has no function")
    for function_id, function in functions.items():
        runtime = function["Properties"].get("Runtime")
        if runtime not in RUNTIMES or runtime != settings.lambda_runtime:
            problems.append(f"{function_id} runs {runtime}, not {settings.lambda_runtime}")
    triggers = [event for event_type, event in feature_event_sources(template) if event_type == source.EVENT_TYPE]
    if len(triggers) != 1:
        problems.append(f"{FUNCTION} must have one {source.EVENT_TYPE} event source, not {len(triggers)}")
    for event in triggers:
        problems += [f"{FUNCTION}: {problem}" for problem in source.event_source_problems(event, template, settings)]
    return problems


def _iam_problems(template: dict[str, Any]) -> list[str]:
    problems = []
    for owner, statement in iam_statements(template):
        if statement.get("Effect") != "Allow":
            continue
        actions = statement.get("Action", [])
        actions = actions if isinstance(actions, list) else [actions]
        if any("*" in action for action in actions):
            problems.append(f"{owner} grants wildcard actions {actions}")
        wildcards = wildcard_resources(statement)
        if wildcards and not set(actions) <= WILDCARD_ALLOWED_ACTIONS:
            problems.append(f"{owner} grants {actions} on {wildcards}, not on named resources")
    return problems


def _queue_problems(template: dict[str, Any]) -> list[str]:
    problems = []
    queues = resources_of_type(template, "AWS::SQS::Queue")
    tls_protected = {
        queue["Ref"]
        for policy in resources_of_type(template, "AWS::SQS::QueuePolicy").values()
        if _denies_insecure_transport(policy["Properties"]["PolicyDocument"])
        for queue in policy["Properties"]["Queues"]
    }
    for queue_id, queue in queues.items():
        properties = queue["Properties"]
        if not (properties.get("SqsManagedSseEnabled") is True or properties.get("KmsMasterKeyId")):
            problems.append(f"{queue_id} is not encrypted at rest")
        if queue_id not in tls_protected:
            problems.append(f"{queue_id} has no queue policy denying requests without TLS")
    return problems


def _encryption_problems(template: dict[str, Any]) -> list[str]:
    """Streams and topics encrypted with KMS; tables recoverable (DynamoDB always encrypts them)."""
    problems = []
    for stream_id, stream in resources_of_type(template, "AWS::Kinesis::Stream").items():
        if stream["Properties"].get("StreamEncryption", {}).get("EncryptionType") != "KMS":
            problems.append(f"{stream_id} is not encrypted at rest")
    for topic_id, topic in resources_of_type(template, "AWS::SNS::Topic").items():
        if not topic["Properties"].get("KmsMasterKeyId"):
            problems.append(f"{topic_id} is not encrypted at rest")
    for table_id, table in resources_of_type(template, "AWS::DynamoDB::Table").items():
        recovery = table["Properties"].get("PointInTimeRecoverySpecification", {})
        if recovery.get("PointInTimeRecoveryEnabled") is not True:
            problems.append(f"{table_id} has no point-in-time recovery")
    return problems


def _denies_insecure_transport(document: dict[str, Any]) -> bool:
    return any(
        statement.get("Effect") == "Deny"
        and statement.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        for statement in document.get("Statement", [])
    )
