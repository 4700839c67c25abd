"""What a packaged template must hold before it may be deployed, checked on the template itself.

Used by `make package` (which refuses to write a template that fails) and by the tests. Each
check reads the final template, after Chalice's merge, because that is what CloudFormation runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from .settings import MIN_MAX_RECEIVE_COUNT, RUNTIMES, VISIBILITY_TIMEOUT_FACTOR, DeploySettings

# Actions without resource-level permissions, which may use "*" (none in this stack today;
# the SageMaker execution role in deploy/execution_role.py has two, outside the stack).
WILDCARD_ALLOWED_ACTIONS: frozenset[str] = frozenset()
# Log streams live under their group: `log-group:NAME:*` names one group's streams only.
LOG_STREAM_SUFFIX = ":*"


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """The template's resources of one type, by logical id."""
    return {
        logical_id: resource
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") == resource_type
    }


def sqs_event_sources(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(function id, function properties, event properties) for every SQS trigger."""
    for function_id, function in resources_of_type(template, "AWS::Serverless::Function").items():
        for event in function["Properties"].get("Events", {}).values():
            if event.get("Type") == "SQS":
                yield function_id, function["Properties"], event["Properties"]


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
        *_queue_problems(template, settings),
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
    sources = list(sqs_event_sources(template))
    if not sources:
        problems.append("the template has no SQS event source")
    for function_id, _, event in sources:
        if event.get("FunctionResponseTypes") != ["ReportBatchItemFailures"]:
            problems.append(
                f"{function_id}'s SQS event source lacks FunctionResponseTypes [ReportBatchItemFailures]: "
                "Lambda would ignore the returned failures and delete whole batches"
            )
        if len(event.get("Queue", {})) != 1:
            problems.append(f"{function_id}'s SQS event source Queue has several keys: {event.get('Queue')}")
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


def _queue_problems(template: dict[str, Any], settings: DeploySettings) -> list[str]:
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
    triggered = {
        event["Queue"]["Fn::Sub"].removeprefix("${").removesuffix(".Arn}")
        for _, _, event in sqs_event_sources(template)
        if "Fn::Sub" in event.get("Queue", {})
    }
    for queue_id in sorted(triggered):
        properties = queues.get(queue_id, {}).get("Properties")
        if properties is None:
            problems.append(f"the SQS trigger reads {queue_id}, which the template does not create")
            continue
        redrive = properties.get("RedrivePolicy", {})
        if redrive.get("maxReceiveCount", 0) < MIN_MAX_RECEIVE_COUNT:
            problems.append(f"{queue_id} needs a RedrivePolicy with maxReceiveCount >= {MIN_MAX_RECEIVE_COUNT}")
        target = redrive.get("deadLetterTargetArn", {}).get("Fn::GetAtt", [None])[0]
        target_properties = queues.get(target, {}).get("Properties", {})
        if target_properties.get("MessageRetentionPeriod", 0) <= properties.get("MessageRetentionPeriod", 345_600):
            problems.append(f"{queue_id}'s dead-letter queue must keep messages longer than {queue_id} does")
        if properties.get("VisibilityTimeout", 30) < VISIBILITY_TIMEOUT_FACTOR * settings.lambda_timeout:
            problems.append(
                f"{queue_id}'s VisibilityTimeout must be at least {VISIBILITY_TIMEOUT_FACTOR}x the function timeout"
            )
    return problems


def _denies_insecure_transport(document: dict[str, Any]) -> bool:
    return any(
        statement.get("Effect") == "Deny"
        and statement.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        for statement in document.get("Statement", [])
    )
