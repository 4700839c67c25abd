# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""`make deploy-endpoint` / `make destroy-endpoint` end to end against moto: create, update, fail, destroy.

moto 5.2 implements every SageMaker call the script makes except UpdateEndpoint. The
`moto_update_endpoint` fixture adds that one call to moto's SageMaker service, acting on moto's
own state (so DescribeEndpoint, DeleteEndpointConfig and the rest stay moto's), and can make the
update fail the way SageMaker does: the endpoint goes back to InService on the old config.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import shutil
import subprocess
import sys
import tarfile
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.sagemaker.responses import SageMakerResponse

from template_tools import operator_stage
from template_tools.deploy import autoscaling, names
from template_tools.deploy.artifacts import ensure_bucket
from template_tools.deploy.cli import DeployError
from template_tools.deploy.configuration import PROJECT_DIR, load_settings
from template_tools.deploy.endpoint_deploy import AwsClients, EndpointDeployer
from template_tools.deploy.endpoint_destroy import destroy_endpoint
from template_tools.deploy.merge_template import merge_template
from template_tools.deploy.model_archive import build_archive
from template_tools.deploy.names import execution_role_name
from template_tools.deploy.progress import Poller, WaitTimedOut
from template_tools.deploy.settings import DeploySettingsError
from template_tools.stage import LAMBDA_FUNCTION_NAME_LIMIT, StageNameError, load_stage, stage_name_problem

BUCKET = "team-model-artifacts"


@pytest.fixture
def moto_update_endpoint(monkeypatch):
    """Teach moto UpdateEndpoint; set `.fail_with` to a reason to make the next update roll back."""

    class UpdateBehaviour:
        fail_with: str | None = None

    behaviour = UpdateBehaviour()

    def update_endpoint(self):
        backend = self.sagemaker_backend
        endpoint = backend.endpoints[self._get_param("EndpointName")]
        config_name = self._get_param("EndpointConfigName")
        config = backend.describe_endpoint_config(config_name)
        if behaviour.fail_with:
            endpoint.failure_reason = behaviour.fail_with
        else:
            endpoint.endpoint_config_name = config_name
            endpoint.production_variants = endpoint._process_production_variants(config["ProductionVariants"])
            endpoint.failure_reason = None
        return json.dumps({"EndpointArn": endpoint.arn})

    monkeypatch.setattr(SageMakerResponse, "update_endpoint", update_endpoint, raising=False)
    return behaviour


@pytest.fixture
def aws(aws_credentials, moto_update_endpoint):
    """moto, with the team's artifacts bucket already there (creating one is tested on its own)."""
    region = load_settings("dev").region
    with mock_aws():
        clients = AwsClients.for_region(region)
        location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        clients.s3.create_bucket(Bucket=BUCKET, **location)
        yield clients


@pytest.fixture
def settings():
    region = load_settings("dev").region
    image = f"123456789012.dkr.ecr.{region}.amazonaws.com/sagemaker-scikit-learn:1.4-2-py312-cpu-py3"
    # Real-time whatever the template answered: the serverless path has a test of its own.
    return load_settings("dev", {"endpoint.kind": "realtime", "endpoint.image_uri": image, "artifacts.bucket": BUCKET})


class Clock:
    """Deploy times one minute apart, so each deploy names its own model and config."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@pytest.fixture
def deployer_for(aws):
    lines: list[str] = []
    clock = Clock()

    def make(settings) -> EndpointDeployer:
        return EndpointDeployer(
            settings, aws, Poller(poll_seconds=0, sleep=lambda _: None, say=lines.append), lines.append, clock
        )

    make.lines = lines
    return make


def archive_members(aws, uri: str) -> list[str]:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    body = aws.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        return tar.getnames()


def test_a_first_deploy_uploads_the_model_and_puts_a_scaled_endpoint_in_service(aws, settings, deployer_for, model_dir):
    release = deployer_for(settings).deploy(model_dir)

    assert release.created
    assert release.model_data.startswith(f"s3://{BUCKET}/{settings.artifacts_prefix}/{settings.endpoint.name}/models/")
    members = archive_members(aws, release.model_data)
    # The model directory whole: its code and its artifacts (the echo model's is echo.json).
    assert {path.relative_to(model_dir).as_posix() for path in model_dir.rglob("*") if path.is_file()} <= set(members)
    assert {"echo.json", "code/inference.py", "code/requirements.txt"} <= set(members)
    endpoint = aws.sagemaker.describe_endpoint(EndpointName=settings.endpoint.name)
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"] == release.config_name
    model = aws.sagemaker.describe_model(ModelName=release.model_name)
    assert model["PrimaryContainer"]["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert model["ExecutionRoleArn"].endswith("/" + execution_role_name(settings.endpoint.name))
    target = aws.autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert [(t["MinCapacity"], t["MaxCapacity"]) for t in target] == [
        (settings.endpoint.realtime.min_capacity, settings.endpoint.realtime.max_capacity)
    ]
    policy = aws.autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"][0]
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == settings.endpoint.realtime.target_invocations_per_instance
    assert any("InService" in line and "s]" in line for line in deployer_for.lines), "the wait loop shows its polls"


def test_a_new_model_updates_the_endpoint_in_place_and_deletes_the_replaced_config(
    aws, settings, deployer_for, model_dir, tmp_path
):
    first = deployer_for(settings).deploy(model_dir)
    retrained = tmp_path / "model"
    shutil.copytree(model_dir, retrained)
    (retrained / "extra-artifact.json").write_text('{"retrained": true}')

    second = deployer_for(settings).deploy(retrained)

    assert not second.created and second.model_data != first.model_data
    endpoint = aws.sagemaker.describe_endpoint(EndpointName=settings.endpoint.name)
    assert endpoint["EndpointConfigName"] == second.config_name
    with pytest.raises(ClientError):
        aws.sagemaker.describe_endpoint_config(EndpointConfigName=first.config_name)
    assert [m["ModelName"] for m in aws.sagemaker.list_models()["Models"]] == [second.model_name]
    assert autoscaling.is_registered(aws.autoscaling, settings.endpoint.name), "autoscaling comes back after the update"


class ApiCalls:
    """The calls the deploy makes through the real boto3 clients, in order, with the parameters it gave.

    moto ignores some parameters (RetainAllVariantProperties), so what SageMaker would be asked is
    read from the request itself, before it is sent.
    """

    def __init__(self, *clients) -> None:
        self.made: list[tuple[str, dict]] = []
        for client in clients:
            client.meta.events.register("provide-client-params", self.record)

    def record(self, params, model, **_) -> None:
        self.made.append((model.name, dict(params)))

    def names(self) -> list[str]:
        return [name for name, _ in self.made]

    def of(self, operation: str) -> list[dict]:
        return [params for name, params in self.made if name == operation]


@pytest.fixture
def api_calls(aws) -> ApiCalls:
    return ApiCalls(aws.sagemaker, aws.autoscaling)


def test_a_new_model_keeps_the_instance_count_and_the_scaling_policy(
    aws, settings, deployer_for, model_dir, tmp_path, api_calls
):
    """AWS: deregister only when the instance type changes; retain the variant's instance count otherwise."""
    deployer_for(settings).deploy(model_dir)
    retrained = tmp_path / "model"
    shutil.copytree(model_dir, retrained)
    (retrained / "extra-artifact.json").write_text('{"retrained": true}')
    api_calls.made.clear()

    deployer_for(settings).deploy(retrained)

    (update,) = api_calls.of("UpdateEndpoint")
    assert update.get("RetainAllVariantProperties") is True, "the new fleet keeps the count autoscaling reached"
    assert "DeregisterScalableTarget" not in api_calls.names() and "DeleteScalingPolicy" not in api_calls.names()
    targets = aws.autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert [t["ResourceId"] for t in targets] == [autoscaling.resource_id(settings.endpoint.name)]
    policies = aws.autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert [p["PolicyName"] for p in policies] == [autoscaling.policy_name(settings.endpoint.name)]


def test_a_new_instance_type_deregisters_autoscaling_before_the_update_and_says_why(
    aws, settings, deployer_for, model_dir, api_calls
):
    """SageMaker refuses to change the instance type of a scalable target, so only then is it deregistered."""
    deployer_for(settings).deploy(model_dir)
    bigger = load_settings(
        "dev",
        {
            "endpoint.kind": "realtime",
            "endpoint.realtime.instance_type": "ml.c5.xlarge",
            "endpoint.image_uri": settings.endpoint.image_uri,
            "artifacts.bucket": BUCKET,
        },
    )
    api_calls.made.clear()

    deployer_for(bigger).deploy(model_dir)

    calls = api_calls.names()
    assert (
        calls.index("DeregisterScalableTarget") < calls.index("UpdateEndpoint") < calls.index("RegisterScalableTarget")
    )
    (update,) = api_calls.of("UpdateEndpoint")
    assert not update.get("RetainAllVariantProperties"), "a new instance type starts at the configured count"
    assert any(f"{settings.endpoint.realtime.instance_type} to ml.c5.xlarge" in line for line in deployer_for.lines), (
        "the deploy says why autoscaling is removed for a moment"
    )
    assert autoscaling.is_registered(aws.autoscaling, settings.endpoint.name)


def test_an_unchanged_model_is_not_uploaded_twice(aws, settings, deployer_for, model_dir):
    first = deployer_for(settings).deploy(model_dir)
    second = deployer_for(settings).deploy(model_dir)

    assert second.model_data == first.model_data
    assert any(line.startswith("Already uploaded") for line in deployer_for.lines)


@pytest.mark.parametrize(
    "change",
    [{"endpoint.kind": "realtime", "endpoint.realtime.instance_type": "ml.c5.large"}, {"endpoint.kind": "serverless"}],
    ids=["new-instance-type", "switch-to-serverless"],
)
def test_a_failed_update_leaves_the_old_config_serving_and_says_so(
    aws, settings, deployer_for, model_dir, moto_update_endpoint, change
):
    """A rolled-back update must leave the old endpoint serving as before, autoscaling included."""
    first = deployer_for(settings).deploy(model_dir)
    moto_update_endpoint.fail_with = (
        "The primary container for production variant AllTraffic did not pass the ping health check."
    )

    with pytest.raises(DeployError, match="still serves"):
        deployer_for(
            load_settings(
                "dev",
                {**change, "endpoint.image_uri": settings.endpoint.image_uri, "artifacts.bucket": BUCKET},
            )
        ).deploy(model_dir)

    endpoint = aws.sagemaker.describe_endpoint(EndpointName=settings.endpoint.name)
    assert endpoint["EndpointConfigName"] == first.config_name
    configs = [c["EndpointConfigName"] for c in aws.sagemaker.list_endpoint_configs()["EndpointConfigs"]]
    assert configs == [first.config_name], "the failed update's config is cleaned up"
    assert any("ping health check" in line for line in deployer_for.lines)
    assert autoscaling.is_registered(aws.autoscaling, settings.endpoint.name)


def test_a_serverless_endpoint_gets_memory_and_concurrency_and_no_autoscaling(aws, settings, deployer_for, model_dir):
    serverless = load_settings(
        "dev",
        {
            "endpoint.kind": "serverless",
            "endpoint.serverless.memory_mb": 3072,
            "endpoint.serverless.max_concurrency": 5,
            "endpoint.image_uri": settings.endpoint.image_uri,
            "artifacts.bucket": BUCKET,
        },
    )
    deployer_for(settings).deploy(model_dir)

    release = deployer_for(serverless).deploy(model_dir)

    config = aws.sagemaker.describe_endpoint_config(EndpointConfigName=release.config_name)
    assert config["ProductionVariants"][0]["ServerlessConfig"] == {"MemorySizeInMB": 3072, "MaxConcurrency": 5}
    assert not autoscaling.is_registered(aws.autoscaling, settings.endpoint.name)


def test_the_seed_workflow_serves_a_model_already_on_s3_and_destroy_keeps_it(
    aws, settings, deployer_for, model_dir, tmp_path
):
    location = (
        {} if settings.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": settings.region}}
    )
    aws.s3.create_bucket(Bucket="seed-models", **location)
    archive = build_archive(model_dir, tmp_path / "model.tar.gz")
    aws.s3.upload_file(str(archive), "seed-models", "echo/v1/model.tar.gz")
    seed = load_settings(
        "dev",
        {
            "endpoint.model_data": "s3://seed-models/echo/v1/model.tar.gz",
            "endpoint.image_uri": settings.endpoint.image_uri,
            "artifacts.bucket": BUCKET,
        },
    )

    release = deployer_for(seed).deploy(model_dir / "not-used-with-model-data")
    model = aws.sagemaker.describe_model(ModelName=release.model_name)
    destroy_endpoint(seed, aws, Poller(poll_seconds=0, say=lambda _: None), say=lambda _: None)

    assert model["PrimaryContainer"]["ModelDataUrl"] == "s3://seed-models/echo/v1/model.tar.gz"
    assert aws.s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0, "nothing was packed or uploaded"
    aws.s3.head_object(Bucket="seed-models", Key="echo/v1/model.tar.gz")


def test_destroy_removes_the_endpoint_and_everything_deploy_created(aws, settings, deployer_for, model_dir):
    release = deployer_for(settings).deploy(model_dir)
    lines: list[str] = []

    destroy_endpoint(settings, aws, Poller(poll_seconds=0, say=lines.append), say=lines.append)

    assert aws.sagemaker.list_endpoints()["Endpoints"] == []
    assert aws.sagemaker.list_endpoint_configs()["EndpointConfigs"] == []
    assert aws.sagemaker.list_models()["Models"] == []
    assert not autoscaling.is_registered(aws.autoscaling, settings.endpoint.name)
    with pytest.raises(ClientError):
        aws.iam.get_role(RoleName=execution_role_name(settings.endpoint.name))
    bucket, key = release.model_data.removeprefix("s3://").split("/", 1)
    assert aws.s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert any("Deleted" in line for line in lines)


def test_a_missing_artifacts_bucket_is_created_private_encrypted_and_tls_only(aws, settings):
    ensure_bucket(aws.s3, "new-artifacts-bucket", settings.region, say=lambda _: None)

    blocked = aws.s3.get_public_access_block(Bucket="new-artifacts-bucket")["PublicAccessBlockConfiguration"]
    assert all(blocked.values())
    rules = aws.s3.get_bucket_encryption(Bucket="new-artifacts-bucket")["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    # moto ignores policy conditions and would then deny every request, so the policy is read
    # from moto's state rather than through the (denied) API.
    from moto.s3.models import s3_backends

    policy = json.loads(s3_backends["123456789012"]["aws"].get_bucket("new-artifacts-bucket").policy)
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_destroying_twice_is_harmless(aws, settings):
    destroy_endpoint(settings, aws, Poller(poll_seconds=0), say=lambda _: None)


def test_the_wait_loop_prints_each_poll_and_gives_up_with_advice():
    statuses = iter(["Creating", "Creating", "Creating"])
    ticks = iter([0, 0, 15, 30, 45])
    lines: list[str] = []
    poller = Poller(
        poll_seconds=15, timeout_seconds=20, sleep=lambda _: None, clock=lambda: next(ticks), say=lines.append
    )

    with pytest.raises(WaitTimedOut, match="run the command again"):
        poller.wait("endpoint e", lambda: next(statuses), {"InService"})

    assert lines == [
        "  [    0s] endpoint e: Creating",
        "  [   15s] endpoint e: Creating",
        "  [   30s] endpoint e: Creating",
    ]


def test_settings_are_checked_again_at_run_time_with_every_problem_listed():
    with pytest.raises(DeploySettingsError) as refused:
        load_settings(
            "dev",
            {
                "endpoint.kind": "serverless",
                "endpoint.serverless.memory_mb": 1000,
                "endpoint.serverless.max_concurrency": 500,
                "artifacts.bucket": "Not_A_Bucket",
            },
        )
    message = str(refused.value)
    assert "memory_mb" in message and "max_concurrency" in message and "artifacts.bucket" in message


# The longest answers the generator accepts (hooks/pre_gen_project.py): a 37-character slug, which
# is the app name, and a 59-character endpoint name, which the dev stage suffixes with "-dev".
LONGEST_APP_NAME = "a" * 37
LONGEST_ENDPOINT_NAME_LENGTH = 63 - len("-dev")
# A stage a team adds beside dev and prod, named as short as its suffix must be to fit.
EXTRA_STAGE = "qa"
DEPLOY_TIME = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
# Keys of the merge template whose names are not resources': AWS's metrics and their dimensions,
# and a table's attributes (the same in every stage by design).
NOT_RESOURCE_NAMES = frozenset({"MetricName", "Dimensions", "AttributeName"})


def project_with_names(tmp_path, app_name: str, endpoint_name: str, stages: dict[str, str] | None = None):
    """A copy of this project's deploy settings with another app name and prod endpoint name.

    Every other stage (dev, and those in `stages`: name to suffix) names its endpoint and
    resources as dev does, with its own suffix.
    """
    project = tmp_path / "project"
    (project / ".chalice").mkdir(parents=True)
    (project / "deploy").mkdir()
    shutil.copyfile(PROJECT_DIR / "deploy" / "config.json", project / "deploy" / "config.json")
    config = json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text())
    config["app_name"] = app_name
    dev = config["stages"]["dev"]
    config["stages"]["prod"]["environment_variables"]["ENDPOINT_NAME"] = endpoint_name
    dev["environment_variables"]["ENDPOINT_NAME"] = f"{endpoint_name}-dev"
    for stage, suffix in (stages or {}).items():
        config["stages"][stage] = json.loads(json.dumps(dev).replace("-dev", suffix))
    (project / ".chalice" / "config.json").write_text(json.dumps(config))
    return project


def derived_names(settings) -> dict[str, str]:
    """Every name the deploy makes up for one stage's resources, by what it names.

    The merge template's names are taken whatever their key (queues, streams, log groups, alarms,
    policies, functions, tables), so a name added there later is checked too.
    """
    found = {
        "execution role": names.execution_role_name(settings.endpoint.name),
        "model and endpoint config": names.versioned_name(settings.endpoint.name, DEPLOY_TIME),
        "scaling policy": autoscaling.policy_name(settings.endpoint.name),
        "scalable target": autoscaling.resource_id(settings.endpoint.name),
        "handler function": settings.function_name,
        "stack": settings.stack_name,
    }

    def collect(node, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in NOT_RESOURCE_NAMES:
                    continue
                if key.endswith("Name") and isinstance(value, str):
                    found[f"{path}/{key}"] = value
                collect(value, f"{path}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                collect(value, f"{path}/{index}")

    collect(merge_template(settings)["Resources"], "")
    return found


@pytest.mark.parametrize("endpoint_length", [46, 47, 53, 54, LONGEST_ENDPOINT_NAME_LENGTH])
def test_no_two_stages_share_a_derived_name_even_with_the_longest_answers(tmp_path, endpoint_length):
    """A shared name is a shared resource: a dev deploy would rewrite prod's role, a dev destroy delete it."""
    project = project_with_names(tmp_path, LONGEST_APP_NAME, "e" * endpoint_length, {EXTRA_STAGE: f"-{EXTRA_STAGE}"})
    stages = {stage: derived_names(load_settings(stage, project_dir=project)) for stage in ("dev", "prod", EXTRA_STAGE)}

    for first, second in itertools.combinations(stages, 2):
        shared = {what: name for what, name in stages[first].items() if name in stages[second].values()}
        assert shared == {}, f"{first} and {second} share these names"
    for derived in stages.values():
        assert len(derived["execution role"]) <= names.IAM_ROLE_NAME_LIMIT
        assert names.sagemaker_name_problem(derived["model and endpoint config"]) is None
        assert len(derived["handler function"]) <= LAMBDA_FUNCTION_NAME_LIMIT


def test_a_name_that_fits_is_kept_as_it_is():
    """Roles already created under their full name keep it: only names over the limit change."""
    assert names.execution_role_name("product-recommendations-model") == "sagemaker-product-recommendations-model"
    assert names.versioned_name("product-recommendations-model", DEPLOY_TIME) == (
        "product-recommendations-model-20261125-100000"
    )


@pytest.mark.parametrize(
    ("stage", "reason"),
    [("staging", "Lambda allows 64.* at most 4 characters"), ("qa_1", "only letters, digits and hyphens")],
    ids=["too-long", "underscore"],
)
def test_a_stage_name_aws_cannot_use_is_refused_with_the_limit_and_the_fix(
    tmp_path, capsys, monkeypatch, stage, reason
):
    """A 37-character app leaves 4 characters for the stage in `<app>-<stage>-handle_feature_events`."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")  # the operator commands set it from deploy/config.json
    project = project_with_names(tmp_path, LONGEST_APP_NAME, "e" * 40, {stage: f"-{stage}"})

    with pytest.raises(StageNameError, match=reason) as refused:
        load_stage(stage, project)
    with pytest.raises(DeploySettingsError, match=reason):
        load_settings(stage, project_dir=project)

    message = str(refused.value)
    assert repr(stage) in message and re.search(r"Rename the stage in \S*\.chalice/config\.json", message)
    # The operator commands (send, tail, redrive, replay) print it as one line and exit 2.
    assert operator_stage.run_command(lambda: operator_stage.operator_environment(stage, project)) == 2
    assert re.search(reason, capsys.readouterr().err)


def test_every_stage_this_project_defines_can_name_its_resources():
    """A stage added to .chalice/config.json is checked by `make test`, before any deploy."""
    stages = json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text())["stages"]
    app_name = json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text())["app_name"]
    assert {stage: stage_name_problem(stage, app_name) for stage in stages} == dict.fromkeys(stages)


def test_the_model_archive_is_reproducible(model_dir, tmp_path):
    first = build_archive(model_dir, tmp_path / "a" / "model.tar.gz").read_bytes()
    second = build_archive(model_dir, tmp_path / "b" / "model.tar.gz").read_bytes()
    assert first == second


def test_the_sdk_is_imported_only_when_an_image_must_be_looked_up():
    code = (
        "import sys, template_tools.deploy.endpoint_deploy, template_tools.deploy.endpoint_destroy; "
        "print(any(name.startswith('sagemaker') for name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_DIR, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
