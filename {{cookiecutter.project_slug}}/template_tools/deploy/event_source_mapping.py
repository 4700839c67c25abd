# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""After a plain `chalice deploy`: set what Chalice cannot on the handler's trigger, and verify it.

    chalice deploy --stage dev --no-autogen-policy
    python -m template_tools.deploy.event_source_mapping --stage dev            # fix, then verify
    python -m template_tools.deploy.event_source_mapping --stage dev --check    # verify only (exit 1 if missing)

Chalice never sets `FunctionResponseTypes: [ReportBatchItemFailures]` (aws/chalice#2029), and
without it Lambda ignores the handler's failure list (an SQS trigger deletes whole batches, a
Kinesis trigger retries them until the records expire). A Kinesis trigger also needs its retry
limits, bisect-on-error and on-failure destination. What the mapping must hold comes from the
source's module (deploy/source.py), the same settings the packaged template gets. The mapping's
UUID is in `.chalice/deployed/<stage>.json`; a later `chalice deploy` updates only the batch
settings and keeps these, but running this after every deploy costs nothing and proves it.

Once every mapping holds the settings, the function's environment gets
TRIGGER_REPORTS_BATCH_ITEM_FAILURES=true. Until then the handler fails a whole batch rather than
name the records to retry, so the window between `chalice deploy` and this command (or a
forgotten run of it) duplicates records but never loses one. A queue source's function also gets
MAX_RECEIVE_COUNT, the source queue's own RedrivePolicy maxReceiveCount, as the stack gives it:
on a record's last delivery the handler then dead-letters it with its reason, where the redrive
would move it without one. A queue with no redrive policy leaves it unset, and says so. A
`chalice deploy` resets the environment, so run this after every one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from chalicelib.template_runtime.settings import MAX_RECEIVE_COUNT, TRIGGER_REPORTS_BATCH_ITEM_FAILURES
from template_tools.stage import PROJECT_DIR

from . import source
from .cli import DeployError, run
from .configuration import load_settings
from .settings import DeploySettings


def deployed_event_sources(project_dir: Path, stage: str) -> list[dict[str, Any]]:
    """The handler's event sources Chalice recorded for the stage (resource name, queue or stream, UUID)."""
    path = project_dir / ".chalice" / "deployed" / f"{stage}.json"
    if not path.exists():
        raise DeployError(f"{path} does not exist: run `chalice deploy --stage {stage} --no-autogen-policy` first")
    resources = json.loads(path.read_text(encoding="utf-8")).get("resources", [])
    mappings = [resource for resource in resources if resource.get("resource_type") == source.DEPLOYED_EVENT_TYPE]
    if not mappings:
        raise DeployError(f"{path} records no {source.EVENT_TYPE} event source; is the handler deployed?")
    return mappings


def dead_letter_arn(event_source_arn: str, dead_letter_queue: str) -> str:
    """The dead-letter queue's ARN, in the partition, region and account of the mapping's source."""
    partition, _, region, account_id = event_source_arn.split(":")[1:5]
    return f"arn:{partition}:sqs:{region}:{account_id}:{dead_letter_queue}"


def configure_event_sources(
    lambda_client: Any,
    mappings: list[dict[str, Any]],
    settings: DeploySettings,
    *,
    fix: bool,
    say: Callable[[str], None] = print,
) -> list[str]:
    """Set (when fix) and verify the source's settings on each mapping; return the UUIDs still lacking some."""
    lacking = []
    for mapping in mappings:
        uuid = mapping["event_uuid"]
        current = lambda_client.get_event_source_mapping(UUID=uuid)
        label = f"{mapping.get('name', uuid)} ({uuid}, {current['EventSourceArn']})"
        wanted = source.mapping_settings(
            settings, dead_letter_arn(current["EventSourceArn"], settings.names.dead_letters)
        )
        if fix and _missing(current, wanted):
            lambda_client.update_event_source_mapping(UUID=uuid, **wanted)
            say(f"Set {', '.join(sorted(wanted))} on {label}")
            current = lambda_client.get_event_source_mapping(UUID=uuid)
        missing = _missing(current, wanted)
        if missing:
            say(f"MISSING: {label} lacks {', '.join(missing)}; a partial failure would not be retried as designed")
            lacking.append(uuid)
        else:
            say(f"OK: {label} reports batch item failures")
    return lacking


@dataclass(frozen=True)
class SourceQueue:
    """A mapping's SQS queue and the receives after which its redrive policy moves a record (None: never)."""

    name: str
    max_receive_count: int | None


def source_queue(sqs_client: Any, event_source_arn: str) -> SourceQueue | None:
    """The mapping's source queue and its RedrivePolicy's maxReceiveCount; None for a stream.

    SQS's RedrivePolicy maxReceiveCount is "the number of times a message is delivered to the
    source queue before being moved to the dead-letter queue", and the ApproximateReceiveCount in
    a Lambda SQS event record's attributes counts those deliveries: the handler compares the two,
    so the function's MAX_RECEIVE_COUNT must be this queue's own value, not the one in
    deploy/config.json. A Kinesis record carries no delivery count, so a stream gets nothing.
    """
    service, _, account_id, name = event_source_arn.split(":")[2:6]
    if service != "sqs":
        return None
    url = sqs_client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account_id)["QueueUrl"]
    # A queue without the attribute answers with no Attributes at all.
    attributes = sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"]).get("Attributes", {})
    policy = json.loads(attributes.get("RedrivePolicy") or "{}")
    receives = policy.get("maxReceiveCount")
    return SourceQueue(name, None if receives is None else int(receives))


def confirm_function_environment(
    lambda_client: Any,
    queues: Mapping[str, SourceQueue | None],
    *,
    fix: bool,
    say: Callable[[str], None] = print,
) -> list[str]:
    """Give the functions (when fix) what the stack gives them; return those still lacking it.

    `queues` maps each function to its source queue (None for a stream). Only called once every
    mapping holds ReportBatchItemFailures. Until a function's environment says so, its handler
    fails a whole batch rather than name the records to retry (batch.py, WholeBatchRetry); until
    it holds its queue's maxReceiveCount, a record failing on its last delivery goes to the
    dead-letter queue through the redrive, without its reason. A later `chalice deploy` writes the
    environment from .chalice/config.json again, without either: whole batches fail, which may
    duplicate but never loses, until this runs again.
    """
    unconfirmed = []
    for function_arn, queue in sorted(queues.items()):
        wanted = {TRIGGER_REPORTS_BATCH_ITEM_FAILURES: "true", **_last_delivery_variables(queue)}
        variables = _environment(lambda_client, function_arn)
        if fix and (differing := _differing(variables, wanted)):
            _update_environment(lambda_client, function_arn, variables, wanted)
            say(f"Set {', '.join(_setting(name, wanted[name]) for name in differing)} on {function_arn}")
            variables = _environment(lambda_client, function_arn)
        reports = [_partial_batch_report(function_arn, variables)]
        if queue is not None:
            reports.append(_last_delivery_report(function_arn, queue, variables))
        for _, line in reports:
            say(line)
        if not all(held for held, _ in reports):
            unconfirmed.append(function_arn)
    return unconfirmed


def _last_delivery_variables(queue: SourceQueue | None) -> dict[str, str | None]:
    """MAX_RECEIVE_COUNT as the queue counts deliveries (None: absent); nothing for a stream."""
    if queue is None:
        return {}
    receives = queue.max_receive_count
    return {MAX_RECEIVE_COUNT: None if receives is None else str(receives)}


def _partial_batch_report(function_arn: str, variables: Mapping[str, str]) -> tuple[bool, str]:
    if variables.get(TRIGGER_REPORTS_BATCH_ITEM_FAILURES) == "true":
        return True, f"OK: {function_arn} answers with a failure list"
    return False, (
        f"MISSING: {function_arn} lacks {TRIGGER_REPORTS_BATCH_ITEM_FAILURES}=true; its handler fails whole "
        "batches (duplicates, never loss) until this command runs without --check"
    )


def _last_delivery_report(function_arn: str, queue: SourceQueue, variables: Mapping[str, str]) -> tuple[bool, str]:
    """Whether the function's MAX_RECEIVE_COUNT is the queue's, and the line that says so."""
    current = variables.get(MAX_RECEIVE_COUNT)
    receives = queue.max_receive_count
    if receives is None:
        if current is None:
            return True, (
                f"NO REDRIVE: {queue.name} has no redrive policy, so {MAX_RECEIVE_COUNT} is left unset on "
                f"{function_arn}: a record that keeps failing comes back forever, until the queue's retention "
                "drops it; give the queue a RedrivePolicy to a dead-letter queue and run this again"
            )
        return False, (
            f"MISSING: {function_arn} has {MAX_RECEIVE_COUNT}={current}, but {queue.name} has no redrive policy; "
            "run this command without --check to remove it"
        )
    if current == str(receives):
        return True, (
            f"OK: {function_arn} dead-letters a record with its reason on its last delivery "
            f"({MAX_RECEIVE_COUNT}={receives}, the maxReceiveCount of {queue.name})"
        )
    return False, (
        f"MISSING: {function_arn} has {MAX_RECEIVE_COUNT}={current or 'unset'}, but {queue.name} moves a record to "
        f"its dead-letter queue after {receives} receives; until this command runs without --check, a record "
        "failing on its last delivery goes there without its reason"
    )


def _differing(variables: Mapping[str, str], wanted: Mapping[str, str | None]) -> list[str]:
    """The wanted variables (None: must be absent) the environment does not hold, by name."""
    return sorted(name for name, value in wanted.items() if variables.get(name) != value)


def _setting(name: str, value: str | None) -> str:
    return f"{name}={value}" if value is not None else f"{name} removed"


def _update_environment(
    lambda_client: Any, function_arn: str, variables: Mapping[str, str], wanted: Mapping[str, str | None]
) -> None:
    """Write `wanted` over the function's variables in one update (None removes one), keeping the rest."""
    updated = {name: value for name, value in {**variables, **wanted}.items() if value is not None}
    # A function still being updated (by the deploy that just ran) refuses a new update.
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=function_arn)
    lambda_client.update_function_configuration(FunctionName=function_arn, Environment={"Variables": updated})
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=function_arn)


def _environment(lambda_client: Any, function_arn: str) -> dict[str, str]:
    configuration = lambda_client.get_function_configuration(FunctionName=function_arn)
    return dict(configuration.get("Environment", {}).get("Variables", {}))


def _missing(current: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The wanted settings the mapping does not hold (nested settings may hold more than wanted)."""
    return sorted(key for key, value in wanted.items() if not _holds(current.get(key), value))


def _holds(current: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict):
        return isinstance(current, dict) and all(_holds(current.get(key), value) for key, value in wanted.items())
    return current == wanted


def main(argv: list[str] | None = None) -> int:
    """Fix and verify (or only verify) the stage's event source mappings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--check", action="store_true", help="only verify; exit 1 if a setting is missing")
    args = parser.parse_args(argv)
    settings = load_settings(args.stage)
    # The queue or stream was made elsewhere: it must fit the handler (deploy/source.py).
    if problems := source.existing_source_problems(settings):
        raise DeployError("\n".join(problems))
    mappings = deployed_event_sources(PROJECT_DIR, args.stage)
    lambda_client = boto3.client("lambda", region_name=settings.region)
    return fix_and_verify(lambda_client, mappings, settings, fix=not args.check)


def fix_and_verify(
    lambda_client: Any,
    mappings: list[dict[str, Any]],
    settings: DeploySettings,
    *,
    fix: bool,
    sqs_client: Any = None,
    say: Callable[[str], None] = print,
) -> int:
    """The mappings first, then (only if they all hold the settings) the functions; 1 if anything is lacking."""
    if configure_event_sources(lambda_client, mappings, settings, fix=fix, say=say):
        return 1
    sqs_client = sqs_client or boto3.client("sqs", region_name=settings.region)
    queues: dict[str, SourceQueue | None] = {}
    for mapping in mappings:
        # The handler has one event source, so each function has one mapping and one queue.
        current = lambda_client.get_event_source_mapping(UUID=mapping["event_uuid"])
        queues[current["FunctionArn"]] = source_queue(sqs_client, current["EventSourceArn"])
    return 1 if confirm_function_environment(lambda_client, queues, fix=fix, say=say) else 0


if __name__ == "__main__":
    sys.exit(run(main))
