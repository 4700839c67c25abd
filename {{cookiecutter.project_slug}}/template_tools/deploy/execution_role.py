# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The IAM role SageMaker runs the endpoint's container with: read this model, pull this image, log.

Two actions have no resource-level permissions and so name "*": ecr:GetAuthorizationToken (a
registry login) and cloudwatch:PutMetricData (narrowed by a namespace condition instead).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from botocore.exceptions import ClientError

from . import names

MANAGED_BY_TAG = {"Key": "managed-by", "Value": "deploy.endpoint_deploy"}
POLICY_NAME = "serve-model"
TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def serving_policy(
    *, endpoint_name: str, model_data_uris: Iterable[str], image_uri: str, partition: str, region: str, account_id: str
) -> dict[str, Any]:
    """What the container needs: the model archives, its image, its log group, its metrics."""
    image = names.ECR_IMAGE_URI.fullmatch(image_uri)
    if image is None:
        raise ValueError(f"{image_uri!r} is not an ECR image URI")
    repository = f"arn:{partition}:ecr:{image['region']}:{image['account']}:repository/{image['repository']}"
    log_group = f"arn:{partition}:logs:{region}:{account_id}:log-group:/aws/sagemaker/Endpoints/{endpoint_name}"
    objects = sorted({f"arn:{partition}:s3:::{uri.removeprefix('s3://')}" for uri in model_data_uris})
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ReadModelArchive", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": objects},
            {
                "Sid": "PullServingImage",
                "Effect": "Allow",
                "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                "Resource": [repository],
            },
            # No resource-level permission exists for a registry login.
            {"Sid": "LogInToRegistry", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
            {
                "Sid": "WriteEndpointLogs",
                "Effect": "Allow",
                "Action": [
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:DescribeLogStreams",
                ],
                "Resource": [log_group, f"{log_group}:*"],
            },
            {
                # No resource-level permission exists for metrics; the condition keeps them to SageMaker's namespace.
                "Sid": "PublishEndpointMetrics",
                "Effect": "Allow",
                "Action": ["cloudwatch:PutMetricData"],
                "Resource": "*",
                "Condition": {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
            },
        ],
    }


def ensure_execution_role(iam: Any, endpoint_name: str, policy: dict[str, Any], say: Callable[[str], None]) -> str:
    """Create the role if needed and set its policy; return its ARN."""
    role_name = names.execution_role_name(endpoint_name)
    try:
        arn = iam.get_role(RoleName=role_name)["Role"]["Arn"]
    except ClientError as error:
        if error.response["Error"]["Code"] != "NoSuchEntity":
            raise
        say(f"Creating IAM role {role_name} for SageMaker")
        arn = iam.create_role(
            RoleName=role_name,
            AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
            Description=f"SageMaker serves {endpoint_name} with this role (deploy/execution_role.py)",
            Tags=[MANAGED_BY_TAG],
        )["Role"]["Arn"]
    iam.put_role_policy(RoleName=role_name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(policy))
    return arn


def delete_execution_role(iam: Any, endpoint_name: str, say: Callable[[str], None]) -> None:
    """Delete the role, if it is the one this script created."""
    role_name = names.execution_role_name(endpoint_name)
    try:
        tags = iam.list_role_tags(RoleName=role_name)["Tags"]
    except ClientError as error:
        if error.response["Error"]["Code"] == "NoSuchEntity":
            return
        raise
    if MANAGED_BY_TAG not in tags:
        say(f"Keeping IAM role {role_name}: it was not created by this script")
        return
    for policy_name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        iam.delete_role_policy(RoleName=role_name, PolicyName=policy_name)
    iam.delete_role(RoleName=role_name)
    say(f"Deleted IAM role {role_name}")
