# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Create or update the stage's SageMaker endpoint from model/ (or a model.tar.gz already on S3).

    python -m template_tools.deploy.endpoint_deploy --stage dev [--kind serverless] [--model-data s3://.../model.tar.gz]

Every run creates a new model and endpoint config (named after the endpoint and the time). A new
endpoint is created; an existing one is updated in place, which SageMaker does without downtime
(new instances first, then traffic moves). On the same instance type the update keeps the
instance count autoscaling has reached, and the scaling policy; a new instance type starts at
endpoint.realtime.instance_count, with autoscaling registered again. If the update fails,
SageMaker keeps the old config serving; this script then says so, removes what it just created,
and exits non-zero. After a successful update the replaced config and its model are deleted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from template_tools.stage import PROJECT_DIR

from . import autoscaling, names
from .artifacts import content_hash, default_bucket, ensure_bucket, upload
from .cli import DeployError, run
from .configuration import load_settings
from .execution_role import ensure_execution_role, serving_policy
from .image_uri import resolve_image_uri
from .model_archive import build_archive
from .progress import Poller
from .settings import VARIANT_NAME, DeploySettings

FINAL_STATUSES = frozenset({"InService", "Failed", "OutOfService", "UpdateRollbackFailed"})
BUSY_STATUSES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack"})
# A role SageMaker has never seen can take a few seconds to become assumable everywhere.
ROLE_PROPAGATION_ATTEMPTS = 6
ROLE_PROPAGATION_DELAY_SECONDS = 10


@dataclass(frozen=True)
class AwsClients:
    """The clients the endpoint scripts use, all in the deploy region."""

    sagemaker: Any
    s3: Any
    iam: Any
    sts: Any
    autoscaling: Any

    @classmethod
    def for_region(cls, region: str) -> AwsClients:
        session = boto3.session.Session(region_name=region)
        return cls(
            sagemaker=session.client("sagemaker"),
            s3=session.client("s3"),
            iam=session.client("iam"),
            sts=session.client("sts"),
            autoscaling=session.client("application-autoscaling"),
        )


@dataclass(frozen=True)
class EndpointRelease:
    """What one deploy put in service."""

    endpoint_name: str
    config_name: str
    model_name: str
    model_data: str
    image_uri: str
    created: bool


def describe_endpoint(sagemaker: Any, name: str) -> dict[str, Any] | None:
    """The endpoint's description, or None if it does not exist."""
    try:
        return sagemaker.describe_endpoint(EndpointName=name)
    except ClientError as error:
        if error.response["Error"]["Code"] == "ValidationException" and "Could not find" in str(error):
            return None
        raise


def config_models(sagemaker: Any, config_name: str) -> list[str]:
    """The models an endpoint config serves (empty if the config is gone)."""
    try:
        config = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
    except ClientError:
        return []
    return [variant["ModelName"] for variant in config["ProductionVariants"]]


def serving_variant(sagemaker: Any, config_name: str) -> dict[str, Any]:
    """The single variant an endpoint config serves (empty if the config is gone)."""
    try:
        config = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
    except ClientError:
        return {}
    return config["ProductionVariants"][0]


def same_instances(old_variant: Mapping[str, Any], new_variant: Mapping[str, Any]) -> bool:
    """Whether both variants run on instances of one type (a serverless variant runs on none)."""
    return bool(old_variant.get("InstanceType")) and old_variant.get("InstanceType") == new_variant.get("InstanceType")


def model_data_of(sagemaker: Any, model_name: str) -> str | None:
    try:
        return sagemaker.describe_model(ModelName=model_name)["PrimaryContainer"].get("ModelDataUrl")
    except ClientError:
        return None


def production_variant(settings: DeploySettings, model_name: str) -> dict[str, Any]:
    """The endpoint config's single variant, real-time or serverless."""
    endpoint = settings.endpoint
    variant: dict[str, Any] = {"VariantName": VARIANT_NAME, "ModelName": model_name}
    if endpoint.kind == "serverless":
        # boto3's field is MemorySizeInMB (sagemaker-core sends MemorySizeInMb: aws/sagemaker-core#225).
        variant["ServerlessConfig"] = {
            "MemorySizeInMB": endpoint.serverless.memory_mb,
            "MaxConcurrency": endpoint.serverless.max_concurrency,
        }
    else:
        variant.update(
            InstanceType=endpoint.realtime.instance_type,
            InitialInstanceCount=endpoint.realtime.instance_count,
            InitialVariantWeight=1.0,
        )
    return variant


class EndpointDeployer:
    """Runs one deploy of the endpoint: model archive, model, config, endpoint, autoscaling."""

    def __init__(
        self,
        settings: DeploySettings,
        clients: AwsClients,
        poller: Poller,
        say: Callable[[str], None] = print,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.poller = poller
        self.say = say
        self.now = now

    @property
    def endpoint_name(self) -> str:
        return self.settings.endpoint.name

    def deploy(self, model_dir: Path) -> EndpointRelease:
        """Put model_dir (or settings' model_data) in service; return what serves now."""
        settings, sagemaker = self.settings, self.clients.sagemaker
        caller = self.clients.sts.get_caller_identity()
        account_id, partition = caller["Account"], caller["Arn"].split(":")[1]
        image_uri = resolve_image_uri(settings.endpoint, settings.region)
        model_data = self.model_data(model_dir, account_id)

        current = self.ready_endpoint()
        old_config = current["EndpointConfigName"] if current else None
        old_models = config_models(sagemaker, old_config) if old_config else []
        serving_data = [uri for uri in (model_data_of(sagemaker, model) for model in old_models) if uri]

        role_arn = settings.endpoint.execution_role_arn or ensure_execution_role(
            self.clients.iam,
            self.endpoint_name,
            serving_policy(
                endpoint_name=self.endpoint_name,
                # The old model stays readable: autoscaling may start old instances until the update ends.
                model_data_uris=[model_data, *serving_data],
                image_uri=image_uri,
                partition=partition,
                region=settings.region,
                account_id=account_id,
            ),
            self.say,
        )
        name = names.versioned_name(self.endpoint_name, self.now() if self.now else None)
        self.create_model(name, image_uri, model_data, role_arn)
        sagemaker.create_endpoint_config(
            EndpointConfigName=name, ProductionVariants=[production_variant(settings, name)], Tags=self.tags()
        )
        self.say(f"Created model and endpoint config {name} ({settings.endpoint.kind})")

        if current is None:
            self.create_endpoint(name)
        else:
            self.update_endpoint(name, old_config, old_models)
        if settings.endpoint.kind == "realtime":
            autoscaling.enable(self.clients.autoscaling, self.endpoint_name, settings.endpoint.realtime, self.say)
        release = EndpointRelease(self.endpoint_name, name, name, model_data, image_uri, created=current is None)
        self.say(f"{self.endpoint_name} is InService with {name} (model {model_data}, image {image_uri})")
        return release

    def model_data(self, model_dir: Path, account_id: str) -> str:
        """The S3 URI of the model archive: the configured one, or model_dir packed and uploaded."""
        settings, s3 = self.settings, self.clients.s3
        if settings.endpoint.model_data:
            match = names.S3_URI.fullmatch(settings.endpoint.model_data)
            try:
                s3.head_object(Bucket=match["bucket"], Key=match["key"])
            except ClientError as error:
                raise DeployError(
                    f"cannot read {settings.endpoint.model_data} ({error.response['Error']['Code']}); check the "
                    "URI and that these credentials may read it"
                ) from None
            self.say(f"Using the model already on S3: {settings.endpoint.model_data}")
            return settings.endpoint.model_data
        bucket = settings.artifacts_bucket or default_bucket(settings.region, account_id)
        ensure_bucket(s3, bucket, settings.region, self.say)
        with tempfile.TemporaryDirectory() as scratch:
            archive = build_archive(model_dir, Path(scratch) / "model.tar.gz")
            key = f"{self.models_prefix()}/{content_hash(archive)}/model.tar.gz"
            return upload(s3, archive, bucket, key, self.say)

    def models_prefix(self) -> str:
        return f"{self.settings.artifacts_prefix}/{self.endpoint_name}/models"

    def ready_endpoint(self) -> dict[str, Any] | None:
        """The existing endpoint once it is not busy, or None; refuses one that failed to create."""
        current = describe_endpoint(self.clients.sagemaker, self.endpoint_name)
        if current and current["EndpointStatus"] in BUSY_STATUSES:
            self.say(f"{self.endpoint_name} is {current['EndpointStatus']}; waiting for it first")
            self.wait()
            current = describe_endpoint(self.clients.sagemaker, self.endpoint_name)
        if current and current["EndpointStatus"] != "InService":
            raise DeployError(
                f"endpoint {self.endpoint_name} is {current['EndpointStatus']} "
                f"({current.get('FailureReason', 'no reason given')}); run `make destroy-endpoint`, then deploy again"
            )
        return current

    def create_model(self, name: str, image_uri: str, model_data: str, role_arn: str) -> None:
        """Create the model, retrying while a new execution role is not yet assumable."""
        for attempt in range(1, ROLE_PROPAGATION_ATTEMPTS + 1):
            try:
                self.clients.sagemaker.create_model(
                    ModelName=name,
                    ExecutionRoleArn=role_arn,
                    PrimaryContainer={
                        "Image": image_uri,
                        "ModelDataUrl": model_data,
                        "Environment": {
                            # Framework containers import the handler from the archive's code/ folder.
                            "SAGEMAKER_PROGRAM": "inference.py",
                            "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                            "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
                            "SAGEMAKER_REGION": self.settings.region,
                        },
                    },
                    Tags=self.tags(),
                )
                return
            except ClientError as error:
                propagating = "assume" in str(error).lower() and attempt < ROLE_PROPAGATION_ATTEMPTS
                if not propagating:
                    raise
                self.say(f"  role {role_arn} is not assumable yet (attempt {attempt}); retrying")
                self.poller.sleep(ROLE_PROPAGATION_DELAY_SECONDS)

    def create_endpoint(self, config_name: str) -> None:
        self.clients.sagemaker.create_endpoint(
            EndpointName=self.endpoint_name, EndpointConfigName=config_name, Tags=self.tags()
        )
        self.say(f"Creating endpoint {self.endpoint_name} (a real-time endpoint takes 5-10 minutes)")
        final = self.wait()
        if final != "InService":
            reason = (describe_endpoint(self.clients.sagemaker, self.endpoint_name) or {}).get("FailureReason")
            raise DeployError(
                f"endpoint {self.endpoint_name} ended {final}: {reason}. Its CloudWatch logs are under "
                f"/aws/sagemaker/Endpoints/{self.endpoint_name}; run `make destroy-endpoint` before trying again"
            )

    def update_endpoint(self, config_name: str, old_config: str, old_models: list[str]) -> None:
        """Switch the endpoint to config_name; on failure keep (and say) what still serves.

        As AWS's "Update endpoints that use auto scaling" says
        (https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-scaling-update.html): SageMaker
        refuses an update that changes the instance type of a variant that is a scalable target, so
        only then is the target deregistered (its policy goes with it), to be registered again once
        the new config serves. A new model on the same instance type is updated with autoscaling in
        place and RetainAllVariantProperties, so the new fleet starts at the instance count
        autoscaling had reached, not at the config's InitialInstanceCount.
        """
        sagemaker, scaler = self.clients.sagemaker, self.clients.autoscaling
        old_variant = serving_variant(sagemaker, old_config)
        new_variant = production_variant(self.settings, config_name)
        keep_instances = same_instances(old_variant, new_variant)
        deregistered = not keep_instances and autoscaling.is_registered(scaler, self.endpoint_name)
        if deregistered:
            new_instances = new_variant.get("InstanceType", "serverless")
            self.say(
                f"The instance type changes from {old_variant.get('InstanceType')} to {new_instances}: autoscaling "
                "is removed for the update (SageMaker refuses it otherwise)"
            )
            autoscaling.disable(scaler, self.endpoint_name, self.say)
        sagemaker.update_endpoint(
            EndpointName=self.endpoint_name, EndpointConfigName=config_name, RetainAllVariantProperties=keep_instances
        )
        kept = ""
        if keep_instances:
            kept = f"; on {old_variant['InstanceType']} it keeps its instance count and autoscaling"
        self.say(
            f"Updating endpoint {self.endpoint_name} from {old_config} to {config_name}{kept}; the old one serves "
            "meanwhile"
        )
        self.wait()
        after = describe_endpoint(sagemaker, self.endpoint_name) or {}
        if after.get("EndpointConfigName") != config_name or after.get("EndpointStatus") != "InService":
            serving = after.get("EndpointConfigName", "nothing")
            self.say(f"Update failed: {after.get('FailureReason', 'no reason given')}")
            self.say(f"{self.endpoint_name} still serves {serving}; removing the new model and config {config_name}")
            self.delete_config_and_models(config_name, [config_name])
            # What still serves is the old config: it gets back the scaling it had, whatever kind
            # of endpoint the failed update was asking for.
            if deregistered:
                autoscaling.enable(scaler, self.endpoint_name, self.settings.endpoint.realtime, self.say)
            raise DeployError(
                f"the update of {self.endpoint_name} failed and was rolled back; {serving} still serves. "
                f"See /aws/sagemaker/Endpoints/{self.endpoint_name} in CloudWatch Logs"
            )
        self.say(f"Deleting the replaced config {old_config} and models {', '.join(old_models) or 'none'}")
        self.delete_config_and_models(old_config, [model for model in old_models if model != config_name])

    def delete_config_and_models(self, config_name: str, model_names: list[str]) -> None:
        sagemaker = self.clients.sagemaker
        for delete, kwargs in [
            (sagemaker.delete_endpoint_config, {"EndpointConfigName": config_name}),
            *[(sagemaker.delete_model, {"ModelName": model}) for model in model_names],
        ]:
            try:
                delete(**kwargs)
            except ClientError as error:
                self.say(f"  could not delete {kwargs}: {error}")

    def wait(self) -> str:
        return self.poller.wait(
            f"endpoint {self.endpoint_name}",
            lambda: (describe_endpoint(self.clients.sagemaker, self.endpoint_name) or {}).get("EndpointStatus", "Gone"),
            FINAL_STATUSES | {"Gone"},
        )

    def tags(self) -> list[dict[str, str]]:
        return [
            {"Key": "project", "Value": self.settings.app_name},
            {"Key": "stage", "Value": self.settings.stage},
            {"Key": "model-version", "Value": self.settings.endpoint.model_version or "unversioned"},
        ]


def override_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line overrides of deploy/config.json's endpoint settings."""
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--kind", choices=["realtime", "serverless"], help="endpoint.kind")
    parser.add_argument("--instance-type", help="endpoint.realtime.instance_type, e.g. ml.m5.large")
    parser.add_argument("--instance-count", type=int, help="endpoint.realtime.instance_count")
    parser.add_argument("--min-capacity", type=int, help="endpoint.realtime.min_capacity")
    parser.add_argument("--max-capacity", type=int, help="endpoint.realtime.max_capacity")
    parser.add_argument("--target-invocations", type=int, help="endpoint.realtime.target_invocations_per_instance")
    parser.add_argument("--memory-mb", type=int, help="endpoint.serverless.memory_mb")
    parser.add_argument("--max-concurrency", type=int, help="endpoint.serverless.max_concurrency")
    parser.add_argument("--model-data", help="endpoint.model_data: an existing s3://.../model.tar.gz")
    parser.add_argument("--image-uri", help="endpoint.image_uri: skip the SDK's image lookup")
    parser.add_argument("--execution-role-arn", help="endpoint.execution_role_arn: use this role, create none")
    parser.add_argument("--bucket", help="artifacts.bucket")
    parser.add_argument("--prefix", help="artifacts.prefix")


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "endpoint.kind": args.kind,
        "endpoint.realtime.instance_type": args.instance_type,
        "endpoint.realtime.instance_count": args.instance_count,
        "endpoint.realtime.min_capacity": args.min_capacity,
        "endpoint.realtime.max_capacity": args.max_capacity,
        "endpoint.realtime.target_invocations_per_instance": args.target_invocations,
        "endpoint.serverless.memory_mb": args.memory_mb,
        "endpoint.serverless.max_concurrency": args.max_concurrency,
        "endpoint.model_data": args.model_data,
        "endpoint.image_uri": args.image_uri,
        "endpoint.execution_role_arn": args.execution_role_arn,
        "artifacts.bucket": args.bucket,
        "artifacts.prefix": args.prefix,
    }


def main(argv: list[str] | None = None) -> int:
    """Deploy the endpoint of one stage."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    override_arguments(parser)
    parser.add_argument("--model-dir", type=Path, default=PROJECT_DIR / "model", help="default: model/")
    parser.add_argument("--poll-seconds", type=float, default=15.0)
    args = parser.parse_args(argv)
    settings = load_settings(args.stage, overrides_from(args))
    poller = Poller(poll_seconds=args.poll_seconds, timeout_seconds=settings.endpoint.wait_minutes * 60)
    EndpointDeployer(settings, AwsClients.for_region(settings.region), poller).deploy(args.model_dir)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
