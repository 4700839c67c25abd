# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The predictions destination, a DynamoDB table with a read API: table, IAM, alarms, API wiring.

The table holds each key's latest prediction: the key is the value of PARTITION_KEY_FIELD (a
string), the handler writes with a conditional PutItem (newest event wins), and `expires_at`
(epoch seconds) lets DynamoDB's TTL drop predictions PREDICTION_TTL_DAYS after they were made.
On-demand capacity, point-in-time recovery on, encrypted at rest with DynamoDB's default
AWS-owned key (every table is; the function needs no kms: permission).

The read API (GET /predictions/{key}, chalicelib/predictions_api.py) is a second function,
Chalice's `APIHandler` behind `RestAPI`. It gets its own role that may only GetItem on the table
and write its own log group, instead of sharing the handler's role (which may invoke the
endpoint and write predictions).

Teardown: the table is deleted with the stack (DeletionPolicy Delete, in every stage). Its
content is derived data, recomputed by the pipeline and expiring on its own, while a retained
table would make the next deploy of the stage fail on the name it still holds. DynamoDB keeps a
system backup of a table deleted with point-in-time recovery on (see "Delete a table with PITR
enabled" in the DynamoDB guide), from which it can be restored under a new name.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .metrics import MINUTE_PERIOD_SECONDS, alarm
from .names import STACK_ARN_PREFIX
{%- if cookiecutter.xray_tracing == "active" %}
from .tracing import tracing_statement
{%- endif %}

if TYPE_CHECKING:
    from .arns import ArnSource
    from .settings import DeploySettings

DESCRIPTION = "a DynamoDB table with a read API"
PREDICTIONS_VARIABLE = "PREDICTIONS_TABLE_NAME"
PREDICTIONS = "PredictionsTable"
# Every action this destination needs supports resource-level permissions.
WILDCARD_ACTIONS: frozenset[str] = frozenset()
TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")
# The item layout the handler writes and the read API reads (see CONTRACTS in chalicelib).
EXPIRES_AT = "expires_at"
# Chalice's logical ids for the REST API and the function behind it.
API_HANDLER = "APIHandler"
REST_API = "RestAPI"
API_ROLE = "PredictionsApiRole"
API_LOG_GROUP = "PredictionsApiLogGroup"
# Chalice names the API's function `<app>-<stage>`, and its role for `chalice deploy
# --no-autogen-policy` after the function `api_handler`.
CHALICE_API_FUNCTION = "api_handler"


def predictions_name_problem(name: str) -> str | None:
    """Say why the name cannot be the predictions table, or None if it can."""
    if not TABLE_NAME.fullmatch(name):
        return f"{name!r} is not a DynamoDB table name: 3-255 letters, digits, hyphens, underscores and dots"
    return None


def settings_problems(settings: DeploySettings) -> list[str]:
    """What the stage must hold for this destination."""
    problems = []
    if not settings.environment.get("PARTITION_KEY_FIELD", "").strip():
        problems.append("PARTITION_KEY_FIELD in .chalice/config.json must name the field that keys the table")
    ttl_days = settings.environment.get("PREDICTION_TTL_DAYS", "")
    if not (ttl_days.isdigit() and int(ttl_days) >= 1):
        problems.append(f"PREDICTION_TTL_DAYS in .chalice/config.json must be a whole number of days, not {ttl_days!r}")
    return problems


def api_function_name(settings: DeploySettings) -> str:
    """The read API's function, named as `chalice deploy` names it."""
    return f"{settings.app_name}-{settings.stage}"


def destination_resources(settings: DeploySettings) -> dict[str, Any]:
    """The predictions table."""
    key = settings.environment["PARTITION_KEY_FIELD"]
    return {
        PREDICTIONS: {
            "Type": "AWS::DynamoDB::Table",
            # See the module docstring: derived data, and a retained table would block redeploys.
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {
                "TableName": settings.names.predictions,
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": key, "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}],
                "TimeToLiveSpecification": {"AttributeName": EXPIRES_AT, "Enabled": True},
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            },
        }
    }


def _table_arn(settings: DeploySettings, arns: ArnSource) -> Any:
    return arns.arn(PREDICTIONS, "dynamodb", f"table/{settings.names.predictions}")


def destination_statements(settings: DeploySettings, arns: ArnSource) -> list[dict[str, Any]]:
    """Writing predictions: one conditional PutItem per prediction (BatchWriteItem cannot be conditional)."""
    return [
        {
            "Sid": "StorePredictions",
            "Effect": "Allow",
            "Action": ["dynamodb:PutItem"],
            "Resource": [_table_arn(settings, arns)],
        }
    ]


def read_api_policy(settings: DeploySettings, arns: ArnSource) -> dict[str, Any]:
    """The read API function's policy: one key's item from the table, and its own logs."""
    log_actions = ["logs:CreateLogStream", "logs:PutLogEvents"]
    if arns.creates_log_group:
        log_actions.insert(0, "logs:CreateLogGroup")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadPredictions",
                "Effect": "Allow",
                "Action": ["dynamodb:GetItem"],
                "Resource": [_table_arn(settings, arns)],
            },
            {
                "Sid": "WriteOwnLogs",
                "Effect": "Allow",
                "Action": log_actions,
                "Resource": arns.log_group(api_function_name(settings)),
            },
{%- if cookiecutter.xray_tracing == "active" %}
            tracing_statement(),
{%- endif %}
        ],
    }


def destination_alarms(settings: DeploySettings) -> dict[str, Any]:
    """Writes are throttled; the read API answers 5xx."""
    table = settings.names.predictions
    return {
        "PredictionWritesThrottledAlarm": alarm(
            settings,
            "prediction-writes-throttled",
            f"{table} keeps throttling PutItem: the handler reports those records as failures, so they are "
            "retried and may reach the dead-letter queue. Traffic grew faster than on-demand capacity adapts, "
            "or one key is too hot.",
            namespace="AWS/DynamoDB",
            metric="ThrottledRequests",
            dimensions=[{"Name": "TableName", "Value": table}, {"Name": "Operation", "Value": "PutItem"}],
            statistic="Sum",
            period=MINUTE_PERIOD_SECONDS,
            threshold=0,
            evaluation_periods=5,
            datapoints_to_alarm=3,
        ),
        "ReadApiServerErrorsAlarm": alarm(
            settings,
            "read-api-5xx",
            f"The read API {settings.stack_name} answered 5xx: see the log group of {api_function_name(settings)}.",
            namespace="AWS/ApiGateway",
            metric="5XXError",
            # RestAPI is named after the stack (read_api_resources), so dev and prod differ.
            dimensions=[{"Name": "ApiName", "Value": settings.stack_name}],
            statistic="Sum",
            period=MINUTE_PERIOD_SECONDS,
            threshold=0,
            evaluation_periods=5,
            datapoints_to_alarm=2,
        ),
    }


def destination_metrics(settings: DeploySettings) -> list[list[Any]]:
    """The dashboard's predictions lines."""
    table = settings.names.predictions
    return [
        ["AWS/DynamoDB", "ConsumedWriteCapacityUnits", "TableName", table, {"stat": "Sum"}],
        ["AWS/DynamoDB", "ThrottledRequests", "TableName", table, "Operation", "PutItem", {"stat": "Sum"}],
        ["AWS/ApiGateway", "Count", "ApiName", settings.stack_name, {"stat": "Sum"}],
        ["AWS/ApiGateway", "5XXError", "ApiName", settings.stack_name, {"stat": "Sum"}],
    ]


def destination_outputs() -> dict[str, Any]:
    """The table, and what IAM callers of the read API allow execute-api:Invoke on."""
    return {
        "PredictionsTableName": {"Value": {"Ref": PREDICTIONS}},
        "PredictionsApiInvokeArn": {
            "Value": {"Fn::Sub": STACK_ARN_PREFIX % "execute-api" + "${" + REST_API + "}/*/GET/predictions/*"}
        },
    }


def read_api_resources(settings: DeploySettings, arns: ArnSource) -> dict[str, Any]:
    """The read API's own role and log group, and what the merge template changes on Chalice's API."""
    return {
        API_LOG_GROUP: {
            "Type": "AWS::Logs::LogGroup",
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {
                "LogGroupName": f"/aws/lambda/{api_function_name(settings)}",
                "RetentionInDays": settings.log_retention_days,
            },
        },
        API_ROLE: {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                },
                "Policies": [
                    {"PolicyName": f"{settings.stack_name}-read-api", "PolicyDocument": read_api_policy(settings, arns)}
                ],
            },
        },
        API_HANDLER: {
            # Created before the function, so Lambda never creates it first (and keeps it forever).
            "DependsOn": [API_LOG_GROUP],
            "Properties": {
                "FunctionName": api_function_name(settings),
                "Runtime": settings.lambda_runtime,
                "Role": {"Fn::GetAtt": [API_ROLE, "Arn"]},
            },
        },
        # Named after the stack, not the app, so each stage's API has its own metrics.
        REST_API: {"Properties": {"Name": settings.stack_name}},
    }


def chalice_policy_files(settings: DeploySettings, arns: ArnSource, stage: str) -> dict[str, dict[str, Any]]:
    """The read API's policy, for `chalice deploy --no-autogen-policy` (see .chalice/config.json)."""
    return {f"policy-{CHALICE_API_FUNCTION}-{stage}.json": read_api_policy(settings, arns)}


def teardown_notice(settings: DeploySettings) -> str:
    """What deleting the stack does to the predictions."""
    return (
        f"The table {settings.names.predictions} and its predictions are deleted with the stack; DynamoDB keeps "
        "a system backup of it (point-in-time recovery is on), restorable under a new name."
    )
