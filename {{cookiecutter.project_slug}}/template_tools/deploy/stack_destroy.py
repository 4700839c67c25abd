# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Delete the stage's CloudFormation stack, refusing while its dead-letter queue holds messages.

    python -m template_tools.deploy.stack_destroy --stage dev [--force]

Deleting the stack deletes its queues, streams, topic or table and everything in them. Dead
letters are records the pipeline could not predict, often the only copy, so a non-empty
dead-letter queue stops the deletion unless --force (`make destroy FORCE=1`) says to go ahead.
What happens to the predictions is the destination's to say (deploy/destination.py), and is
printed before the deletion starts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from botocore.exceptions import ClientError

from . import destination
from .artifacts import default_bucket, delete_prefix
from .cli import DeployError, run
from .configuration import load_settings
from .progress import Poller
from .settings import DeploySettings
from .stack_deploy import StackClients, pipeline_prefix, stack_status

COUNTED_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


def dead_letter_count(sqs: object, queue_name: str) -> int:
    """Messages in the queue, visible or not (0 if the queue is gone)."""
    try:
        url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    except ClientError:
        return 0
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(COUNTED_ATTRIBUTES))["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in COUNTED_ATTRIBUTES)


def destroy_stack(
    settings: DeploySettings,
    clients: StackClients,
    poller: Poller,
    *,
    force: bool = False,
    say: Callable[[str], None] = print,
) -> None:
    """Delete the stack (and the code zips uploaded for it)."""
    stack = settings.stack_name
    if stack_status(clients.cloudformation, stack) is None:
        say(f"No stack {stack} in {settings.region}")
    else:
        dead_letters = settings.names.dead_letters
        held = dead_letter_count(clients.sqs, dead_letters)
        if held and not force:
            raise DeployError(
                f"{dead_letters} holds {held} message(s) that deleting the stack would destroy. "
                "Read or redrive them first, or run `make destroy FORCE=1` to delete them with the stack"
            )
        if held:
            say(f"Deleting {held} message(s) in {dead_letters} with the stack (FORCE=1)")
        say(destination.teardown_notice(settings))
        clients.cloudformation.delete_stack(StackName=stack)
        say(f"Deleting stack {stack}")
        final = poller.wait(
            f"stack {stack}",
            lambda: stack_status(clients.cloudformation, stack) or "DELETE_COMPLETE",
            {"DELETE_COMPLETE", "DELETE_FAILED"},
        )
        if final != "DELETE_COMPLETE":
            raise DeployError(f"stack {stack} ended {final}; see its events in the CloudFormation console, then retry")
    account_id = clients.sts.get_caller_identity()["Account"]
    bucket = settings.artifacts_bucket or default_bucket(settings.region, account_id)
    try:
        deleted = delete_prefix(clients.s3, bucket, pipeline_prefix(settings))
    except ClientError:
        deleted = 0
    if deleted:
        say(f"Deleted {deleted} uploaded package file(s) under s3://{bucket}/{pipeline_prefix(settings)}/")


def main(argv: list[str] | None = None) -> int:
    """Destroy the stack of one stage."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--force", action="store_true", help="delete even if the dead-letter queue holds messages")
    parser.add_argument("--poll-seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    settings = load_settings(args.stage)
    destroy_stack(
        settings, StackClients.for_region(settings.region), Poller(poll_seconds=args.poll_seconds), force=args.force
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
