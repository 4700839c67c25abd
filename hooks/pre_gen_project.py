"""Refuse answers that AWS, Chalice or Python would reject later, all at once, before files exist.

Cookiecutter runs this hook after it has created the project folder and saved the answers in its
replay file. Exiting non-zero makes cookiecutter delete the folder again, so a refused project
leaves nothing behind, and the user can edit the replay file and run `cookiecutter --replay`.

The checks are plain functions of plain values so the template's tests can import the rendered
hook and call them directly.
"""

from __future__ import annotations

import json
import keyword
import re
import shlex
import sys
import textwrap
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import NamedTuple

# The answers are read as data: an answer is never pasted into Python source, so a quote or a
# newline in it cannot change what this hook does.
ANSWERS: dict[str, object] = json.loads(
    r"""
{{ cookiecutter | tojson }}
""".strip()
)

# Chalice names the SQS handler's function `{app_name}-{stage}-{handler}`; Lambda allows 64
# characters, and the longest stage the project defines is `prod`.
LAMBDA_FUNCTION_NAME_LIMIT = 64
HANDLER_FUNCTION_NAME = "handle_feature_events"
LONGEST_STAGE = "prod"
PROJECT_SLUG_LIMIT = LAMBDA_FUNCTION_NAME_LIMIT - len(f"-{LONGEST_STAGE}-{HANDLER_FUNCTION_NAME}")

# Top-level names the generated project already uses, plus the libraries it imports: a package
# with one of these names would shadow it in tests and tooling.
RESERVED_PACKAGE_NAMES = frozenset(
    {
        "app",
        "chalicelib",
        "template_tools",
        "tests",
        "model",
        "events",
        "boto3",
        "botocore",
        "chalice",
        "moto",
        "pytest",
    }
)

PROJECT_SLUG_PATTERN = re.compile(r"[a-z][a-z0-9-]*")
# SageMaker's own pattern for EndpointName and ModelName.
ENDPOINT_NAME_PATTERN = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
# SageMaker hosting instance types look like ml.m5.large or ml.g5.12xlarge.
INSTANCE_TYPE_PATTERN = re.compile(r"ml\.[a-z0-9]+\.[a-z0-9]+")
# The shape of every AWS region code: eu-west-1, us-gov-west-1, us-isob-east-1, ...
AWS_REGION_PATTERN = re.compile(r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d")
# An image in ECR, pinned by a tag or a digest: the pattern the deploy code checks again
# (template_tools/deploy/names.py), with the region spelt as a region code.
ECR_IMAGE_URI_PATTERN = re.compile(
    r"\d{12}\.dkr\.ecr\.(?P<region>[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d)\.amazonaws\.com(\.cn)?/"
    r"[a-z0-9._/-]+(:[\w.-]+|@sha256:[0-9a-f]{64})"
)
ECR_IMAGE_URI_EXAMPLE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/my-model:1.0"
# The model_framework answer that serves the model from the team's own image instead of one of
# SageMaker's framework containers.
CUSTOM_FRAMEWORK = "custom"
# What each kind of resource accepts as a name (SQS FIFO names add ".fifo" to the queue rule).
RESOURCE_NAME_RULES: dict[str, tuple[re.Pattern[str], int, str]] = {
    "SQS queue": (re.compile(r"[A-Za-z0-9_-]+"), 80, "letters, digits, hyphens and underscores"),
    "SNS topic": (re.compile(r"[A-Za-z0-9_-]+"), 256, "letters, digits, hyphens and underscores"),
    "Kinesis stream": (re.compile(r"[A-Za-z0-9_.-]+"), 128, "letters, digits, hyphens, underscores and dots"),
    "DynamoDB table": (
        re.compile(r"[A-Za-z0-9_.-]{3,}"),
        255,
        "3 or more letters, digits, hyphens, underscores and dots",
    ),
}
FIFO_SUFFIX = ".fifo"
# Attributes the DynamoDB destination writes next to the key; the key field must not collide.
TABLE_ATTRIBUTES = frozenset({"event_time_ms", "message_id", "envelope", "expires_at"})
PARTITION_KEY_FIELD_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
# FIFO event sources take at most 10 records per batch and no batching window (Lambda's rules).
FIFO_BATCH_LIMIT = 10
# The dev stage in .chalice/config.json names its own queues and endpoint `<name>-dev`, so the
# answers must leave room for the suffix within each name limit (SQS 80, SageMaker 63, ...).
DEV_STAGE_SUFFIX = "-dev"
ENDPOINT_NAME_LIMIT = 63 - len(DEV_STAGE_SUFFIX)
# Written as the generated files write it: plain digits, so it is also a valid JSON number.
WHOLE_NUMBER_PATTERN = re.compile(r"-?(0|[1-9][0-9]*)")

MODEL_VERSION_LIMIT = 256
REPORT_WIDTH = 96
ONE_LINE_TEXT_LIMIT = 200
# Lambda's guidance for SQS triggers: fewer deliveries can dead-letter a healthy record that was
# only throttled while the function scaled out.
MIN_MAX_RECEIVE_COUNT = 5
# Lambda's guidance: the queue must hide a record for at least six function timeouts, or SQS
# hands it to a second invocation while the first one is still working on it.
VISIBILITY_TIMEOUT_FACTOR = 6
# The handler keeps the last DEADLINE_RESERVE_MS (3 s by default) of the function timeout to
# publish and answer, and needs 2 s before that to call the endpoint: DEFAULT_RESERVE_MS and
# MIN_ENDPOINT_SHARE_MS in chalicelib/template_runtime/deadline.py, which `make deploy` checks too.
DEFAULT_RESERVE_SECONDS = 3
MIN_ENDPOINT_SHARE_SECONDS = 2
# Above 10 records per batch, Lambda requires a batching window of at least one second.
UNWINDOWED_BATCH_LIMIT = 10

WHOLE_NUMBER_RANGES: dict[str, tuple[int, int]] = {
    "batch_size": (1, 10_000),
    "maximum_batching_window_seconds": (0, 300),
    "maximum_concurrency": (2, 1_000),
    "max_receive_count": (1, 1_000),
    "lambda_memory_mb": (128, 10_240),
    "lambda_timeout_seconds": (1, 900),
    "visibility_timeout_seconds": (0, 43_200),
    "records_per_endpoint_call": (1, 10_000),
    "endpoint_concurrency": (1, 64),
    "serverless_max_concurrency": (1, 200),
    "prediction_ttl_days": (1, 3_650),
}

CHOICES: dict[str, tuple[str, ...]] = {
    "input_source": ("sqs", "sqs-fifo", "kinesis"),
    "output_destination": ("sqs", "sns", "kinesis", "dynamodb"),
    "read_api_auth": ("iam", "none"),
    "xray_tracing": ("off", "active"),
    # Chalice 1.34 packages up to python3.14; the merge template sets the function's Runtime.
    "lambda_runtime": ("python3.12", "python3.13", "python3.14"),
    "endpoint_content_type": ("application/json", "application/jsonlines"),
    "endpoint_call_mode": ("batch", "per-record"),
    "model_framework": ("sklearn", "xgboost", "pytorch", "huggingface", CUSTOM_FRAMEWORK),
    "endpoint_kind": ("realtime", "serverless"),
    # SageMaker serverless memory: 1024-6144 MB in 1 GB steps.
    "serverless_memory_mb": ("1024", "2048", "3072", "4096", "5120", "6144"),
}

NAME_OPTIONS = ("features_source_name", "predictions_destination_name", "dead_letter_queue_name")
DESTINATION_KINDS = {
    "sqs": "SQS queue",
    "sns": "SNS topic",
    "kinesis": "Kinesis stream",
    "dynamodb": "DynamoDB table",
}


class Problem(NamedTuple):
    """One answer that cannot be used, with the reason and how to fix it."""

    option: str
    given: object
    reason: str


def parse_whole_number(value: object) -> int | None:
    """Return the integer an answer spells ("10" or 10), or None if it is not a whole number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and WHOLE_NUMBER_PATTERN.fullmatch(value):
        return int(value)
    return None


def in_range_number(value: object, option: str) -> int | None:
    """Return an option's whole number if it is within the option's range, else None."""
    number = parse_whole_number(value)
    low, high = WHOLE_NUMBER_RANGES[option]
    return number if number is not None and low <= number <= high else None


def whole_number_problems(value: object, low: int, high: int) -> list[str]:
    """Explain why an answer is not a whole number between low and high (inclusive)."""
    number = parse_whole_number(value)
    if number is None:
        return [f"must be a whole number written in digits, from {low} to {high}"]
    if not low <= number <= high:
        return [f"must be from {low} to {high}"]
    return []


def one_line_text_problems(value: object, *, required: bool) -> list[str]:
    """Explain why an answer is not a single line of printable text (names, descriptions)."""
    if not isinstance(value, str):
        return ["must be text"]
    if required and not value.strip():
        return ["must not be empty"]
    if not value.isprintable():
        return ["must be a single line without tabs or control characters"]
    if len(value) > ONE_LINE_TEXT_LIMIT:
        return [f"must be at most {ONE_LINE_TEXT_LIMIT} characters (it has {len(value)})"]
    return []


def project_slug_problems(slug: object) -> list[str]:
    """Explain why a slug cannot name the folder, the Chalice app and its Lambda functions."""
    if not isinstance(slug, str):
        return ["must be text"]
    if not PROJECT_SLUG_PATTERN.fullmatch(slug):
        return [
            "must start with a lowercase letter and use only lowercase letters, digits and "
            "hyphens (it names the folder, the Chalice app and AWS resources), e.g. "
            "product-recommendations"
        ]
    if len(slug) > PROJECT_SLUG_LIMIT:
        example = f"{slug}-{LONGEST_STAGE}-{HANDLER_FUNCTION_NAME}"
        return [
            f"must be at most {PROJECT_SLUG_LIMIT} characters (it has {len(slug)}): Chalice "
            f"names the Lambda function {example!r} ({len(example)} characters) and Lambda "
            f"allows {LAMBDA_FUNCTION_NAME_LIMIT}; choose a shorter slug"
        ]
    return []


def package_name_problems(name: object) -> list[str]:
    """Explain why a name cannot be the importable package of the project's tooling."""
    if not isinstance(name, str):
        return ["must be text"]
    if not (name.isascii() and name.isidentifier()):
        return [
            "must be a Python identifier: ASCII letters, digits and underscores, not starting "
            "with a digit, e.g. product_recommendations"
        ]
    if keyword.iskeyword(name):
        return [f"is a Python keyword, so `import {name}` cannot work; add a word, e.g. {name}_tools"]
    if name in RESERVED_PACKAGE_NAMES:
        return [f"would shadow `{name}`, which the generated project already uses; pick another name"]
    if name in sys.stdlib_module_names:
        return [f"would shadow the standard library module `{name}`; pick another name"]
    return []


def endpoint_name_problems(name: object) -> list[str]:
    """Explain why a name is not a valid SageMaker endpoint (and model) name."""
    if not isinstance(name, str):
        return ["must be text"]
    if not ENDPOINT_NAME_PATTERN.fullmatch(name):
        return [
            "must be letters, digits and hyphens, starting and ending with a letter or digit "
            "(SageMaker's rule), e.g. product-recommendations-model"
        ]
    if len(name) > ENDPOINT_NAME_LIMIT:
        return [
            f"must be at most {ENDPOINT_NAME_LIMIT} characters (it has {len(name)}): the dev "
            f"stage adds {DEV_STAGE_SUFFIX!r} and SageMaker allows 63"
        ]
    return []


def model_version_problems(version: object) -> list[str]:
    """Explain why a value cannot be stamped on every prediction as the model version."""
    if not isinstance(version, str):
        return ["must be text"]
    if not version.strip():
        return ["must not be empty, e.g. 1 or 2026-11-25"]
    if len(version) > MODEL_VERSION_LIMIT:
        return [f"must be at most {MODEL_VERSION_LIMIT} characters (it has {len(version)})"]
    if version != version.strip():
        return ["must not start or end with spaces"]
    if not version.isprintable() or any(c in version for c in "\"'`\\"):
        return ["must be printable text without quotes, backslashes or control characters, e.g. 1.4.0"]
    return []


def aws_region_problems(region: object) -> list[str]:
    """Explain why a value is not shaped like an AWS region code."""
    if not isinstance(region, str) or not AWS_REGION_PATTERN.fullmatch(region):
        return ["must be an AWS region code such as eu-west-1 or us-east-1"]
    return []


def instance_type_problems(instance_type: object) -> list[str]:
    """Explain why a value is not a SageMaker hosting instance type."""
    if not isinstance(instance_type, str) or not INSTANCE_TYPE_PATTERN.fullmatch(instance_type):
        return ["must be a SageMaker instance type such as ml.m5.large or ml.c5.xlarge"]
    return []


def image_uri_problems(image_uri: object) -> list[str]:
    """Explain why a value is neither empty nor an ECR image URI pinned by a tag or digest."""
    if not isinstance(image_uri, str):
        return ["must be text"]
    if image_uri and not ECR_IMAGE_URI_PATTERN.fullmatch(image_uri):
        return [
            "must be an image in ECR, <account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag> (or "
            f"@sha256:<digest> instead of :<tag>), e.g. {ECR_IMAGE_URI_EXAMPLE}; push the image to ECR first"
        ]
    return []


def resource_name_problems(name: object) -> list[str]:
    """Explain why a value cannot name any queue, topic, stream or table (the kind is checked later)."""
    if not isinstance(name, str):
        return ["must be text"]
    if not name or not RESOURCE_NAME_RULES["Kinesis stream"][0].fullmatch(name):
        return [
            "must be letters, digits, hyphens, underscores and dots only, "
            "e.g. product-recommendations-features"
        ]
    return []


def named_resource_problems(name: str, kind: str, *, fifo: bool = False) -> list[str]:
    """Explain why `name` cannot name a resource of `kind` in both stages (dev adds "-dev")."""
    pattern, limit, allowed = RESOURCE_NAME_RULES[kind]
    if kind == "SQS queue":
        if fifo and not name.endswith(FIFO_SUFFIX):
            return [f"names a standard queue, but FIFO input needs FIFO queues: end it with {FIFO_SUFFIX}"]
        if not fifo and name.endswith(FIFO_SUFFIX):
            return [f"names a FIFO queue; drop {FIFO_SUFFIX}, or choose input_source sqs-fifo"]
    stem = name.removesuffix(FIFO_SUFFIX) if fifo else name
    if not pattern.fullmatch(stem):
        return [f"must be {allowed} only (the {kind} naming rule)"]
    if len(name) + len(DEV_STAGE_SUFFIX) > limit:
        return [
            f"must be at most {limit - len(DEV_STAGE_SUFFIX)} characters (it has {len(name)}): the dev "
            f"stage adds {DEV_STAGE_SUFFIX!r} and a {kind} name allows {limit}"
        ]
    return []


def fraction_problems(value: object) -> list[str]:
    """Explain why a value is not a share from 0 to 1, written in digits."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return ["must be a number from 0 to 1, e.g. 0 or 0.01"]
    try:
        number = float(value)
    except ValueError:
        return ["must be a number from 0 to 1, e.g. 0 or 0.01"]
    if not 0 <= number <= 1:
        return ["must be from 0 (log no payloads) to 1 (log every payload)"]
    return []


def partition_key_field_problems(field: object) -> list[str]:
    """Explain why a value cannot be the input field that keys predictions."""
    if not isinstance(field, str) or not PARTITION_KEY_FIELD_PATTERN.fullmatch(field):
        return [
            "must be the name of a field of the model input: letters, digits and underscores, e.g. user_id"
        ]
    if field in TABLE_ATTRIBUTES:
        taken = ", ".join(sorted(TABLE_ATTRIBUTES))
        return [f"is an attribute the DynamoDB destination writes itself; pick another ({taken} are taken)"]
    return []


def choice_problems(value: object, choices: tuple[str, ...]) -> list[str]:
    """Explain why a value is not one of the choices the template supports."""
    if value not in choices:
        return ["must be one of " + ", ".join(choices)]
    return []


def resource_kind_problems(answers: Mapping[str, object]) -> list[Problem]:
    """Check each name against the rules of the resource the chosen source and destination make it."""
    source, destination = answers.get("input_source"), answers.get("output_destination")
    if source not in CHOICES["input_source"] or destination not in CHOICES["output_destination"]:
        return []
    fifo = source == "sqs-fifo"
    kinds = {
        "features_source_name": ("Kinesis stream" if source == "kinesis" else "SQS queue", fifo),
        "predictions_destination_name": (DESTINATION_KINDS[str(destination)], fifo and destination == "sqs"),
        "dead_letter_queue_name": ("SQS queue", fifo),
    }
    found: list[Problem] = []
    for option, (kind, fifo_name) in kinds.items():
        name = answers.get(option)
        if isinstance(name, str):
            found.extend(
                Problem(option, name, reason)
                for reason in named_resource_problems(name, kind, fifo=fifo_name)
            )
    queues = [option for option, (kind, _) in kinds.items() if kind == "SQS queue"]
    for index, option in enumerate(queues):
        same = [earlier for earlier in queues[:index] if answers.get(earlier) == answers.get(option)]
        if same:
            found.append(
                Problem(
                    option,
                    answers.get(option),
                    f"is the same name as {same[0]}; each queue needs its own name",
                )
            )
    return found


def serving_image_problems(answers: Mapping[str, object]) -> list[Problem]:
    """Check that the image URI comes exactly with a custom framework, in the endpoint's region."""
    framework, image_uri = answers.get("model_framework"), answers.get("model_image_uri")
    if framework not in CHOICES["model_framework"] or not isinstance(image_uri, str):
        return []
    if framework == CUSTOM_FRAMEWORK and not image_uri:
        return [
            Problem(
                "model_image_uri",
                image_uri,
                "is needed when model_framework is custom: give the ECR URI of your serving image, e.g. "
                f"{ECR_IMAGE_URI_EXAMPLE}, or choose a framework whose container SageMaker provides "
                "(sklearn, xgboost, pytorch, huggingface)",
            )
        ]
    if framework != CUSTOM_FRAMEWORK and image_uri:
        # Refused rather than ignored: someone who typed an image most likely meant to serve it.
        return [
            Problem(
                "model_image_uri",
                image_uri,
                f"is used only with model_framework custom, and model_framework is {framework}: clear it to "
                f"serve with SageMaker's {framework} container, or choose custom to serve with this image",
            )
        ]
    image = ECR_IMAGE_URI_PATTERN.fullmatch(image_uri)
    region = answers.get("aws_region")
    region_known = isinstance(region, str) and AWS_REGION_PATTERN.fullmatch(region)
    if image and region_known and image["region"] != region:
        return [
            Problem(
                "model_image_uri",
                image_uri,
                f"is in {image['region']}, but SageMaker pulls an endpoint's image from ECR in the "
                f"endpoint's own region, and aws_region is {region}: push or replicate the image to {region}",
            )
        ]
    return []


def cross_option_problems(answers: Mapping[str, object]) -> list[Problem]:
    """Find rules that tie two answers together (each answer on its own is assumed valid)."""
    number = {key: in_range_number(answers.get(key), key) for key in WHOLE_NUMBER_RANGES}
    found: list[Problem] = []

    found.extend(resource_kind_problems(answers))
    found.extend(serving_image_problems(answers))

    source = answers.get("input_source")
    batch, window = number["batch_size"], number["maximum_batching_window_seconds"]
    if (
        source == "sqs"
        and batch is not None
        and window is not None
        and batch > UNWINDOWED_BATCH_LIMIT
        and window < 1
    ):
        found.append(
            Problem(
                "batch_size",
                answers.get("batch_size"),
                f"above {UNWINDOWED_BATCH_LIMIT} needs a batching window (Lambda's rule): set "
                "maximum_batching_window_seconds to 1 or more (it is "
                f"{answers.get('maximum_batching_window_seconds')!s}), or lower batch_size to "
                f"{UNWINDOWED_BATCH_LIMIT}",
            )
        )

    if answers.get("input_source") == "sqs-fifo" and batch is not None and window is not None:
        if batch > FIFO_BATCH_LIMIT:
            found.append(
                Problem(
                    "batch_size",
                    answers.get("batch_size"),
                    f"must be at most {FIFO_BATCH_LIMIT} with a FIFO queue (Lambda's rule); lower it",
                )
            )
        if window != 0:
            found.append(
                Problem(
                    "maximum_batching_window_seconds",
                    answers.get("maximum_batching_window_seconds"),
                    "must be 0 with a FIFO queue: Lambda offers no batching window for FIFO sources",
                )
            )

    receives = number["max_receive_count"]
    # For a Kinesis source it bounds Lambda's retries instead (max_receive_count - 1 of them).
    if source != "kinesis" and receives is not None and receives < MIN_MAX_RECEIVE_COUNT:
        found.append(
            Problem(
                "max_receive_count",
                answers.get("max_receive_count"),
                f"must be at least {MIN_MAX_RECEIVE_COUNT} (Lambda's guidance for SQS "
                "triggers): with fewer deliveries a record that was only throttled while Lambda "
                "scaled out lands in the dead-letter queue",
            )
        )

    timeout, visibility = number["lambda_timeout_seconds"], number["visibility_timeout_seconds"]
    shortest_timeout = DEFAULT_RESERVE_SECONDS + MIN_ENDPOINT_SHARE_SECONDS
    if timeout is not None and 0 < timeout < shortest_timeout:
        found.append(
            Problem(
                "lambda_timeout_seconds",
                answers.get("lambda_timeout_seconds"),
                f"must be at least {shortest_timeout}: the handler keeps the last "
                f"{DEFAULT_RESERVE_SECONDS} s (DEADLINE_RESERVE_MS) to publish and answer and needs "
                f"{MIN_ENDPOINT_SHARE_SECONDS} s before them to call the endpoint; with less every "
                "record is retried on its deadline",
            )
        )
    hides_records = source != "kinesis"  # a stream has no visibility timeout
    if (
        hides_records
        and timeout is not None
        and visibility is not None
        and visibility < VISIBILITY_TIMEOUT_FACTOR * timeout
    ):
        found.append(
            Problem(
                "visibility_timeout_seconds",
                answers.get("visibility_timeout_seconds"),
                f"must be at least {VISIBILITY_TIMEOUT_FACTOR} x lambda_timeout_seconds "
                f"({VISIBILITY_TIMEOUT_FACTOR} x {timeout} = {VISIBILITY_TIMEOUT_FACTOR * timeout}), "
                "or SQS hands a record to a second invocation while the first is still working "
                "on it; raise it or lower lambda_timeout_seconds",
            )
        )

    per_call = number["records_per_endpoint_call"]
    if answers.get("endpoint_call_mode") == "per-record" and per_call is not None and per_call != 1:
        found.append(
            Problem(
                "records_per_endpoint_call",
                answers.get("records_per_endpoint_call"),
                "must be 1 when endpoint_call_mode is per-record; set it to 1, or choose "
                "endpoint_call_mode batch",
            )
        )
    return found


def single_option_checks() -> dict[str, Callable[[object], list[str]]]:
    """Map every option, in prompt order, to the check of its answer on its own."""
    checks: dict[str, Callable[[object], list[str]]] = {
        "project_name": partial(one_line_text_problems, required=True),
        "project_slug": project_slug_problems,
        "package_name": package_name_problems,
        "description": partial(one_line_text_problems, required=False),
        "endpoint_name": endpoint_name_problems,
        "model_version": model_version_problems,
        "aws_region": aws_region_problems,
        "endpoint_instance_type": instance_type_problems,
    }
    checks.update({option: resource_name_problems for option in NAME_OPTIONS})
    checks["partition_key_field"] = partition_key_field_problems
    checks["payload_log_sample_rate"] = fraction_problems
    checks.update(
        {
            option: partial(whole_number_problems, low=low, high=high)
            for option, (low, high) in WHOLE_NUMBER_RANGES.items()
        }
    )
    checks.update({option: partial(choice_problems, choices=choices) for option, choices in CHOICES.items()})
    checks["model_image_uri"] = image_uri_problems
    return checks


def validate(answers: Mapping[str, object]) -> list[Problem]:
    """Return every problem with the answers, in option order; an empty list means all is well."""
    single_checks = single_option_checks()
    found: list[Problem] = []
    for option, check in single_checks.items():
        if option not in answers:
            found.append(Problem(option, None, "is missing from the answers"))
            continue
        found.extend(Problem(option, answers[option], reason) for reason in check(answers[option]))
    # Cross-option rules only make sense once each answer involved is valid on its own.
    refused = {problem.option for problem in found}
    found.extend(p for p in cross_option_problems(answers) if p.option not in refused)
    order = list(single_checks)
    return sorted(found, key=lambda p: order.index(p.option))


def shown(value: object, limit: int = 120) -> str:
    """Show an answer as JSON, the way it appears in the replay file, shortened if very long."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def report(problems: list[Problem], answers: Mapping[str, object]) -> str:
    """Write the message a user sees when answers are refused, ending with how to rerun."""
    heading = "1 answer needs" if len(problems) == 1 else f"{len(problems)} answers need"
    lines = [f"Cannot generate the project: {heading} fixing.", ""]
    for problem in problems:
        lines.append(f"  {problem.option} = {shown(problem.given)}")
        lines.extend(
            textwrap.wrap(
                f"{problem.option} {problem.reason}.",
                width=REPORT_WIDTH,
                initial_indent="      ",
                subsequent_indent="      ",
                break_on_hyphens=False,
            )
        )
    template = str(answers.get("_template") or "<template>")
    repo_dir = str(answers.get("_repo_dir") or template)
    output_dir = answers.get("_output_dir")
    rerun = ["cookiecutter", "--replay", template] + (["-o", str(output_dir)] if output_dir else [])
    replay_file = Path("~/.cookiecutter_replay") / f"{Path(repo_dir).name}.json"
    lines.append("")
    lines.extend(
        textwrap.wrap(
            "Generation stopped before any file was written. Your answers are saved in "
            f"cookiecutter's replay file, {replay_file} (unless your cookiecutter config sets "
            "replay_dir): fix the values named above there, then run:",
            width=REPORT_WIDTH,
        )
    )
    lines += ["", "  " + shlex.join(rerun)]
    return "\n".join(lines)


def main() -> int:
    """Validate the answers cookiecutter rendered into this hook; 1 stops generation."""
    problems = validate(ANSWERS)
    if problems:
        print(report(problems, ANSWERS), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
