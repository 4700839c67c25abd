# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Delete the stage's endpoint and everything `make deploy-endpoint` created for it.

    python -m template_tools.deploy.endpoint_destroy --stage dev [--keep-artifacts]

Removes the autoscaling target, the endpoint (waiting until it is gone), its config and model,
the execution role this project created, and the model archives it uploaded. A model.tar.gz
given with --model-data (the seed workflow) is never deleted: it was not ours.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from . import autoscaling
from .artifacts import default_bucket, delete_prefix
from .cli import run
from .configuration import load_settings
from .endpoint_deploy import AwsClients, config_models, describe_endpoint
from .execution_role import delete_execution_role
from .progress import Poller
from .settings import DeploySettings


def destroy_endpoint(
    settings: DeploySettings,
    clients: AwsClients,
    poller: Poller,
    *,
    keep_artifacts: bool = False,
    say: Callable[[str], None] = print,
) -> None:
    """Delete the endpoint, its config and models, its role and uploaded archives."""
    name, sagemaker = settings.endpoint.name, clients.sagemaker
    autoscaling.disable(clients.autoscaling, name, say)
    current = describe_endpoint(sagemaker, name)
    if current is None:
        say(f"No endpoint {name} in {settings.region}")
    else:
        config = current["EndpointConfigName"]
        models = config_models(sagemaker, config)
        sagemaker.delete_endpoint(EndpointName=name)
        say(f"Deleting endpoint {name}")
        poller.wait(
            f"endpoint {name}",
            lambda: (describe_endpoint(sagemaker, name) or {}).get("EndpointStatus", "Deleted"),
            {"Deleted"},
        )
        sagemaker.delete_endpoint_config(EndpointConfigName=config)
        for model in models:
            sagemaker.delete_model(ModelName=model)
        say(f"Deleted endpoint config {config} and model {', '.join(models)}")
    if not settings.endpoint.execution_role_arn:
        delete_execution_role(clients.iam, name, say)
    if not keep_artifacts:
        account_id = clients.sts.get_caller_identity()["Account"]
        bucket = settings.artifacts_bucket or default_bucket(settings.region, account_id)
        prefix = f"{settings.artifacts_prefix}/{name}/models"
        if bucket_exists(clients, bucket):
            deleted = delete_prefix(clients.s3, bucket, prefix)
            say(f"Deleted {deleted} uploaded model archive(s) under s3://{bucket}/{prefix}/")


def bucket_exists(clients: AwsClients, bucket: str) -> bool:
    try:
        clients.s3.head_bucket(Bucket=bucket)
    except clients.s3.exceptions.ClientError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    """Destroy the endpoint of one stage."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--keep-artifacts", action="store_true", help="keep the uploaded model archives on S3")
    parser.add_argument("--poll-seconds", type=float, default=15.0)
    args = parser.parse_args(argv)
    settings = load_settings(args.stage)
    poller = Poller(poll_seconds=args.poll_seconds, timeout_seconds=settings.endpoint.wait_minutes * 60)
    destroy_endpoint(settings, AwsClients.for_region(settings.region), poller, keep_artifacts=args.keep_artifacts)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
