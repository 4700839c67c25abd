# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The Lambda functions' least-privilege IAM policies, for CloudFormation or for `chalice deploy`.

    python -m template_tools.deploy.iam_policy --stage dev            # writes .chalice/policy-dev.json

The handler's policy names only this stage's features source, predictions destination,
dead-letter queue, endpoint and its own log group: the source's and destination's statements
come from deploy/source.py and deploy/destination.py. A statement uses "*" only for an action AWS
authorises on no narrower resource, and the module that grants it says why. The statements come
in two forms: with CloudFormation references (the merge template, where the stack creates the
resources and the log group) and with the account's literal ARNs (the file that
`chalice deploy --no-autogen-policy` embeds as is, where Lambda creates the log group itself).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from template_tools.stage import PROJECT_DIR

from . import destination, source
from .arns import ArnSource, Resource
from .cli import run
from .configuration import load_settings
from .names import STACK_ARN_PREFIX, endpoint_arn_name
from .queues import DEAD_LETTER_QUEUE
from .settings import DeploySettings

try:
    from .tracing import tracing_statement
except ModuleNotFoundError as missing:
    # deploy/tracing.py exists only in a project with X-Ray tracing active: without it the
    # functions send no traces, and their policy grants nothing for X-Ray.
    if missing.name != f"{__package__}.tracing":
        raise
    tracing_statement = None


class StackArns:
    """References CloudFormation resolves: the stack's own resources, in the stack's account and region."""

    creates_log_group = False

    def arn(self, logical_id: str, service: str, resource: str, attribute: str = "Arn") -> Resource:
        return {"Fn::GetAtt": [logical_id, attribute]}

    def endpoint(self, name: str) -> Resource:
        return {"Fn::Sub": STACK_ARN_PREFIX % "sagemaker" + "endpoint/" + endpoint_arn_name(name)}

    def log_group(self, function_name: str) -> list[Resource]:
        return [{"Fn::Sub": STACK_ARN_PREFIX % "logs" + "log-group:/aws/lambda/" + function_name + ":*"}]


@dataclass(frozen=True)
class AccountArns:
    """Literal ARNs in one account and region."""

    partition: str
    region: str
    account_id: str
    # Without the stack nobody creates the log group beforehand: Lambda does, on first use.
    creates_log_group = True

    def arn(self, logical_id: str, service: str, resource: str, attribute: str = "Arn") -> Resource:
        return f"arn:{self.partition}:{service}:{self.region}:{self.account_id}:{resource}"

    def endpoint(self, name: str) -> Resource:
        return f"arn:{self.partition}:sagemaker:{self.region}:{self.account_id}:endpoint/{endpoint_arn_name(name)}"

    def log_group(self, function_name: str) -> list[Resource]:
        group = f"arn:{self.partition}:logs:{self.region}:{self.account_id}:log-group:/aws/lambda/{function_name}"
        # CreateLogGroup is checked against the group, the stream actions against group:*.
        return [group, f"{group}:*"]


def function_policy(settings: DeploySettings, arns: ArnSource) -> dict[str, Any]:
    """The policy document of the handler's role: exactly what the handler and its trigger call."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            *source.source_statements(settings, arns),
            {
                # SendMessageBatch is authorised as sqs:SendMessage.
                "Sid": "SendDeadLetters",
                "Effect": "Allow",
                "Action": ["sqs:GetQueueUrl", "sqs:SendMessage"],
                "Resource": [arns.arn(DEAD_LETTER_QUEUE, "sqs", settings.names.dead_letters)],
            },
            *destination.destination_statements(settings, arns),
            {
                "Sid": "InvokeModelEndpoint",
                "Effect": "Allow",
                "Action": ["sagemaker:InvokeEndpoint"],
                "Resource": [arns.endpoint(settings.endpoint.name)],
            },
            log_statement(settings.function_name, arns),
            *([tracing_statement()] if tracing_statement else []),
        ],
    }


def log_statement(function_name: str, arns: ArnSource) -> dict[str, Any]:
    """Writing the function's own log group, and creating it where no stack does."""
    log_actions = ["logs:CreateLogStream", "logs:PutLogEvents"]
    if arns.creates_log_group:
        log_actions.insert(0, "logs:CreateLogGroup")
    return {"Sid": "WriteOwnLogs", "Effect": "Allow", "Action": log_actions, "Resource": arns.log_group(function_name)}


def account_arns(region: str) -> AccountArns:
    """Literal ARNs for the account the current credentials belong to."""
    caller = boto3.client("sts", region_name=region).get_caller_identity()
    partition = caller["Arn"].split(":")[1]
    return AccountArns(partition=partition, region=region, account_id=caller["Account"])


def main(argv: list[str] | None = None) -> int:
    """Write .chalice/policy-<stage>.json for `chalice deploy --no-autogen-policy`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--account-id", help="12-digit account id (default: the current credentials' account)")
    parser.add_argument("--partition", default="aws", help="with --account-id: aws, aws-cn or aws-us-gov")
    parser.add_argument("--out", type=Path, help="file to write (default: .chalice/policy-<stage>.json)")
    args = parser.parse_args(argv)
    settings = load_settings(args.stage)
    if args.account_id:
        arns = AccountArns(partition=args.partition, region=settings.region, account_id=args.account_id)
    else:
        arns = account_arns(settings.region)
    out = args.out or PROJECT_DIR / ".chalice" / f"policy-{args.stage}.json"
    policy = function_policy(settings, arns)
    out.write_text(json.dumps(policy, indent=2) + "\n", encoding="utf-8")
    print(f"Wrote {out} for account {arns.account_id}: {len(policy['Statement'])} statements")
    for name, document in destination.chalice_policy_files(settings, arns, args.stage).items():
        path = out.parent / name
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"Wrote {path}: {len(document['Statement'])} statements")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
