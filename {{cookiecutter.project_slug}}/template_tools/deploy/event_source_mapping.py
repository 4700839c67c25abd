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
forgotten run of it) duplicates records but never loses one. A `chalice deploy` resets the
environment, so run this after every one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

from chalicelib.template_runtime.settings import TRIGGER_REPORTS_BATCH_ITEM_FAILURES
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


def confirm_partial_batch_responses(
    lambda_client: Any, function_arns: set[str], *, fix: bool, say: Callable[[str], None] = print
) -> list[str]:
    """Tell the functions (when fix) that their triggers act on a failure list; return those not told.

    Only called once every mapping holds ReportBatchItemFailures. Until a function's environment
    says so, its handler fails a whole batch rather than name the records to retry (batch.py,
    WholeBatchRetry). A later `chalice deploy` writes the environment from .chalice/config.json
    again, without the variable: the handler is then back to failing whole batches, which may
    duplicate but never loses, until this runs again.
    """
    unconfirmed = []
    for function_arn in sorted(function_arns):
        variables = _environment(lambda_client, function_arn)
        if fix and variables.get(TRIGGER_REPORTS_BATCH_ITEM_FAILURES) != "true":
            # A function still being updated (by the deploy that just ran) refuses a new update.
            lambda_client.get_waiter("function_updated_v2").wait(FunctionName=function_arn)
            lambda_client.update_function_configuration(
                FunctionName=function_arn,
                Environment={"Variables": {**variables, TRIGGER_REPORTS_BATCH_ITEM_FAILURES: "true"}},
            )
            lambda_client.get_waiter("function_updated_v2").wait(FunctionName=function_arn)
            say(f"Set {TRIGGER_REPORTS_BATCH_ITEM_FAILURES}=true on {function_arn}")
            variables = _environment(lambda_client, function_arn)
        if variables.get(TRIGGER_REPORTS_BATCH_ITEM_FAILURES) == "true":
            say(f"OK: {function_arn} answers with a failure list")
        else:
            say(
                f"MISSING: {function_arn} lacks {TRIGGER_REPORTS_BATCH_ITEM_FAILURES}=true; its handler fails whole "
                "batches (duplicates, never loss) until this command runs without --check"
            )
            unconfirmed.append(function_arn)
    return unconfirmed


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


def fix_and_verify(lambda_client: Any, mappings: list[dict[str, Any]], settings: DeploySettings, *, fix: bool) -> int:
    """The mappings first, then (only if they all hold the settings) the functions; 1 if anything is lacking."""
    if configure_event_sources(lambda_client, mappings, settings, fix=fix):
        return 1
    function_arns = {lambda_client.get_event_source_mapping(UUID=m["event_uuid"])["FunctionArn"] for m in mappings}
    return 1 if confirm_partial_batch_responses(lambda_client, function_arns, fix=fix) else 0


if __name__ == "__main__":
    sys.exit(run(main))
