"""After a plain `chalice deploy`: turn on ReportBatchItemFailures on the SQS trigger, and verify it.

    chalice deploy --stage dev --no-autogen-policy
    python -m deploy.event_source_mapping --stage dev            # fix, then verify
    python -m deploy.event_source_mapping --stage dev --check    # verify only (exit 1 if missing)

Chalice never sets `FunctionResponseTypes: [ReportBatchItemFailures]` (aws/chalice#2029), and
without it Lambda ignores the handler's failure list and deletes whole batches. The mapping's
UUID is in `.chalice/deployed/<stage>.json`; a later `chalice deploy` keeps the setting, but
running this after every deploy costs nothing and proves it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

from {{ cookiecutter.package_name }}.stage import PROJECT_DIR

from .cli import DeployError, run
from .settings import load_settings

REPORT_BATCH_ITEM_FAILURES = "ReportBatchItemFailures"


def deployed_sqs_mappings(project_dir: Path, stage: str) -> list[dict[str, Any]]:
    """The SQS event sources Chalice recorded for the stage (resource name, queue, UUID)."""
    path = project_dir / ".chalice" / "deployed" / f"{stage}.json"
    if not path.exists():
        raise DeployError(f"{path} does not exist: run `chalice deploy --stage {stage} --no-autogen-policy` first")
    resources = json.loads(path.read_text(encoding="utf-8")).get("resources", [])
    mappings = [resource for resource in resources if resource.get("resource_type") == "sqs_event"]
    if not mappings:
        raise DeployError(f"{path} records no SQS event source; is the SQS handler deployed?")
    return mappings


def report_batch_item_failures(
    lambda_client: Any, mappings: list[dict[str, Any]], *, fix: bool, say: Callable[[str], None] = print
) -> list[str]:
    """Set (when fix) and verify the setting on each mapping; return the UUIDs still lacking it."""
    lacking = []
    for mapping in mappings:
        uuid = mapping["event_uuid"]
        label = f"{mapping.get('name', uuid)} ({uuid}, queue {mapping.get('queue')})"
        current = lambda_client.get_event_source_mapping(UUID=uuid)
        if fix and REPORT_BATCH_ITEM_FAILURES not in (current.get("FunctionResponseTypes") or []):
            lambda_client.update_event_source_mapping(UUID=uuid, FunctionResponseTypes=[REPORT_BATCH_ITEM_FAILURES])
            say(f"Set {REPORT_BATCH_ITEM_FAILURES} on {label}")
            current = lambda_client.get_event_source_mapping(UUID=uuid)
        if REPORT_BATCH_ITEM_FAILURES in (current.get("FunctionResponseTypes") or []):
            say(f"OK: {label} reports batch item failures")
        else:
            say(f"MISSING: {label} would delete whole batches on a partial failure")
            lacking.append(uuid)
    return lacking


def main(argv: list[str] | None = None) -> int:
    """Fix and verify (or only verify) the stage's SQS event source mappings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--check", action="store_true", help="only verify; exit 1 if the setting is missing")
    args = parser.parse_args(argv)
    settings = load_settings(args.stage)
    mappings = deployed_sqs_mappings(PROJECT_DIR, args.stage)
    lambda_client = boto3.client("lambda", region_name=settings.region)
    return 1 if report_batch_item_failures(lambda_client, mappings, fix=not args.check) else 0


if __name__ == "__main__":
    sys.exit(run(main))
