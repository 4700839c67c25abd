# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Deploy package/sam.json as the stage's CloudFormation stack, creating it or updating it in place.

    python -m template_tools.deploy.stack_deploy --stage dev  # after `make package`

Uploads the code zip (named by its hash) to the artifacts bucket, points the template's CodeUri at
it, then creates and executes a change set and follows the stack until it settles. A run with
nothing changed ends at the change set ("no changes"); a failed update is rolled back by
CloudFormation, and the failing resources' reasons are printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from .artifacts import content_hash, default_bucket, ensure_bucket, upload
from .cli import DeployError, run
from .configuration import load_settings
from .package import PACKAGE_DIR, TEMPLATE_FILE
from .progress import Poller
from .settings import DeploySettings
from .template_checks import resources_of_type, template_problems

CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]
# CloudFormation takes a template inline up to this size; above it, from S3.
INLINE_TEMPLATE_LIMIT = 51_200
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
GOOD_END_STATES = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"})


@dataclass(frozen=True)
class StackClients:
    """The clients the stack scripts use, in the deploy region."""

    cloudformation: Any
    s3: Any
    sqs: Any
    sts: Any

    @classmethod
    def for_region(cls, region: str) -> StackClients:
        session = boto3.session.Session(region_name=region)
        return cls(*(session.client(name) for name in ("cloudformation", "s3", "sqs", "sts")))


def stack_status(cloudformation: Any, stack_name: str) -> str | None:
    """The stack's status, or None if there is no such stack."""
    try:
        return cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]["StackStatus"]
    except ClientError as error:
        if "does not exist" in str(error):
            return None
        raise


def is_settled(status: str) -> bool:
    return not status.endswith("_IN_PROGRESS")


def pipeline_prefix(settings: DeploySettings) -> str:
    """Where this stage's code zips and templates go in the artifacts bucket."""
    return f"{settings.artifacts_prefix}/{settings.stage}/pipeline"


def deploy_stack(
    settings: DeploySettings,
    clients: StackClients,
    package_dir: Path,
    poller: Poller,
    say: Callable[[str], None] = print,
) -> dict[str, str]:
    """Deploy the packaged template; return the stack's outputs (empty when nothing changed)."""
    template = json.loads((package_dir / TEMPLATE_FILE).read_text(encoding="utf-8"))
    account_id = clients.sts.get_caller_identity()["Account"]
    bucket = settings.artifacts_bucket or default_bucket(settings.region, account_id)
    ensure_bucket(clients.s3, bucket, settings.region, say)
    for function in resources_of_type(template, "AWS::Serverless::Function").values():
        code = package_dir / Path(function["Properties"]["CodeUri"]).name
        key = f"{pipeline_prefix(settings)}/{content_hash(code)}-{code.name}"
        function["Properties"]["CodeUri"] = upload(clients.s3, code, bucket, key, say)
    body = json.dumps(template, separators=(",", ":"))
    source: dict[str, str] = {"TemplateBody": body}
    if len(body.encode()) > INLINE_TEMPLATE_LIMIT:
        rendered = package_dir / "sam.deploy.json"
        rendered.write_text(body, encoding="utf-8")
        uri = upload(
            clients.s3, rendered, bucket, f"{pipeline_prefix(settings)}/{content_hash(rendered)}-sam.json", say
        )
        source = {"TemplateURL": f"https://{bucket}.s3.{settings.region}.amazonaws.com/{uri.split('/', 3)[3]}"}

    stack, cloudformation = settings.stack_name, clients.cloudformation
    status = stack_status(cloudformation, stack)
    if status and not is_settled(status):
        say(f"Stack {stack} is {status}; waiting for it first")
        status = poller.wait(f"stack {stack}", lambda: stack_status(cloudformation, stack) or "GONE", _settled_states())
    if status == "ROLLBACK_COMPLETE":
        raise DeployError(
            f"stack {stack} failed to create earlier and cannot be updated; run `make destroy`, then deploy again"
        )
    change_set_type = "UPDATE" if status and status != "REVIEW_IN_PROGRESS" else "CREATE"
    change_set = f"deploy-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    cloudformation.create_change_set(
        StackName=stack,
        ChangeSetName=change_set,
        ChangeSetType=change_set_type,
        Capabilities=CAPABILITIES,
        Tags=[{"Key": "project", "Value": settings.app_name}, {"Key": "stage", "Value": settings.stage}],
        **source,
    )
    say(f"{'Creating' if change_set_type == 'CREATE' else 'Updating'} stack {stack} (change set {change_set})")
    described: dict[str, Any] = {}

    def change_set_status() -> str:
        described.update(cloudformation.describe_change_set(StackName=stack, ChangeSetName=change_set))
        return described["Status"]

    if poller.wait(f"change set {change_set}", change_set_status, {"CREATE_COMPLETE", "FAILED"}) == "FAILED":
        reason = described.get("StatusReason", "")
        if any(marker in reason for marker in NO_CHANGES):
            cloudformation.delete_change_set(StackName=stack, ChangeSetName=change_set)
            say(f"No changes: stack {stack} already matches {package_dir / TEMPLATE_FILE}")
            return {}
        raise DeployError(f"CloudFormation refused the change set: {reason}")
    for change in described.get("Changes", []):
        resource = change.get("ResourceChange", {})
        say(f"  {resource.get('Action', '?'):7} {resource.get('LogicalResourceId')} ({resource.get('ResourceType')})")

    cloudformation.execute_change_set(StackName=stack, ChangeSetName=change_set)
    final = poller.wait(f"stack {stack}", lambda: stack_status(cloudformation, stack) or "GONE", _settled_states())
    if final not in GOOD_END_STATES:
        raise DeployError(f"stack {stack} ended {final}:\n{failure_reasons(cloudformation, stack)}")
    outputs = {
        output["OutputKey"]: output["OutputValue"]
        for output in cloudformation.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    }
    for key, value in outputs.items():
        say(f"  {key}: {value}")
    return outputs


def _settled_states() -> _Settled:
    return _Settled()


class _Settled:
    """Every status that is not *_IN_PROGRESS (the poller asks `status in final`)."""

    def __contains__(self, status: object) -> bool:
        return isinstance(status, str) and is_settled(status)


def failure_reasons(cloudformation: Any, stack: str, limit: int = 10) -> str:
    """The latest failed resources and why, newest first."""
    events = cloudformation.describe_stack_events(StackName=stack)["StackEvents"]
    failed = [e for e in events if e.get("ResourceStatus", "").endswith("_FAILED")][:limit]
    return (
        "\n".join(f"  {e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}" for e in failed)
        or "  (no reason given)"
    )


def checked_template(settings: DeploySettings, package_dir: Path) -> None:
    """Refuse a package that is missing, from another stage, or unsafe."""
    path = package_dir / TEMPLATE_FILE
    if not path.exists():
        raise DeployError(f"{path} does not exist; run `make package STAGE={settings.stage}` first")
    template = json.loads(path.read_text(encoding="utf-8"))
    for function in resources_of_type(template, "AWS::Serverless::Function").values():
        chalice_tag = function["Properties"].get("Tags", {}).get("aws-chalice", "")
        if f"stage={settings.stage}:" not in chalice_tag:
            raise DeployError(
                f"{path} was packaged for another stage ({chalice_tag}); run `make package STAGE={settings.stage}`"
            )
    problems = template_problems(template, settings)
    if problems:
        raise DeployError(f"{path} must not be deployed:\n" + "\n".join(f"  - {p}" for p in problems))


def main(argv: list[str] | None = None) -> int:
    """Deploy the packaged stack of one stage."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--package-dir", type=Path, default=PACKAGE_DIR)
    parser.add_argument("--poll-seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    settings = load_settings(args.stage)
    checked_template(settings, args.package_dir)
    deploy_stack(
        settings, StackClients.for_region(settings.region), args.package_dir, Poller(poll_seconds=args.poll_seconds)
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
