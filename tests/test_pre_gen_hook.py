"""Unit tests of the pre-generation hook's rules, called on the rendered and imported hook."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from baking import TEMPLATE_DIR, default_answers, render_hook

TEMPLATE_CONTEXT = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))


def options_refused(hook: ModuleType, **changes: Any) -> set[str]:
    """Validate the default answers with some changed, and return the options refused.

    Defaults that depend on a changed answer (FIFO names) follow it, as they would at the
    prompt; a choice outside the list (which cookiecutter itself refuses) is put in afterwards.
    """
    lists = {key: value for key, value in TEMPLATE_CONTEXT.items() if isinstance(value, list)}
    renderable = {key: value for key, value in changes.items() if value in lists.get(key, [value])}
    return {problem.option for problem in hook.validate(default_answers(renderable) | changes)}


def test_the_default_answers_pass_validation(pre_gen_hook: ModuleType) -> None:
    """`cookiecutter --no-input` must always produce a project."""
    assert pre_gen_hook.validate(pre_gen_hook.ANSWERS) == []


def test_the_rendered_hook_reads_hostile_answers_as_data(tmp_path: Path) -> None:
    """A quote, backslash or newline in an answer must never become Python code in the hook."""
    hostile = 'x"""; import os; os.system("false") #\\\n\'\'\' {not jinja} </script>'
    hook = render_hook("pre_gen_project", default_answers() | {"description": hostile}, tmp_path)
    assert hook.ANSWERS["description"] == hostile


@pytest.mark.parametrize(
    ("given", "expected"),
    [("10", 10), (10, 10), ("0", 0), ("-3", -3), ("10000", 10_000)],
)
def test_whole_numbers_are_accepted_as_digits_or_integers(
    pre_gen_hook: ModuleType, given: object, expected: int
) -> None:
    """Prompts answer strings, extra_context may pass ints: both spell a whole number."""
    assert pre_gen_hook.parse_whole_number(given) == expected


@pytest.mark.parametrize(
    "given", ["ten", "1.5", "", " 10", "010", "+5", "1e3", "\u0661\u0660", 1.0, True, None]
)
def test_anything_else_is_not_a_whole_number(pre_gen_hook: ModuleType, given: object) -> None:
    """Numbers are pasted into JSON and Python as written, so only plain digits are safe."""
    assert pre_gen_hook.parse_whole_number(given) is None


def test_a_slug_is_long_enough_for_chalices_lambda_name_at_37_characters(pre_gen_hook: ModuleType) -> None:
    """`<slug>-prod-handle_feature_events` must fit Lambda's 64-character function name."""
    assert pre_gen_hook.project_slug_problems("a" * 37) == []
    (reason,) = pre_gen_hook.project_slug_problems("a" * 38)
    assert "handle_feature_events" in reason
    assert "64" in reason


@pytest.mark.parametrize("slug", ["Product", "1-app", "-app", "my_app", "my app", 'a"b', "a\\b", "a/b", ""])
def test_a_slug_must_be_lowercase_letters_digits_and_hyphens(pre_gen_hook: ModuleType, slug: str) -> None:
    """The slug names a folder, a Chalice app and AWS resources, so it keeps to the safe set."""
    assert pre_gen_hook.project_slug_problems(slug)


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("import", "keyword"),
        ("json", "standard library"),
        ("app", "shadow"),
        ("chalicelib", "shadow"),
        ("tests", "shadow"),
        ("model", "shadow"),
        ("boto3", "shadow"),
        ("9lives", "identifier"),
        ("my-tools", "identifier"),
        ("café", "identifier"),
        ('"; import os; "', "identifier"),
    ],
)
def test_a_package_name_must_be_importable_without_shadowing_anything(
    pre_gen_hook: ModuleType, name: str, hint: str
) -> None:
    """A package named like a keyword, a stdlib module or a project folder breaks imports."""
    (reason,) = pre_gen_hook.package_name_problems(name)
    assert hint in reason


@pytest.mark.parametrize("name", ["m", "a--b", "Model-2", "a" * 59])
def test_sagemakers_endpoint_names_are_accepted(pre_gen_hook: ModuleType, name: str) -> None:
    """SageMaker allows 63 characters with inner hyphens; the dev stage's `-dev` takes 4."""
    assert pre_gen_hook.endpoint_name_problems(name) == []


@pytest.mark.parametrize("name", ["", "-a", "a-", "a_b", "a.b", "a" * 60])
def test_endpoint_names_sagemaker_refuses_are_refused(pre_gen_hook: ModuleType, name: str) -> None:
    """Catch now what CreateEndpoint would refuse at deploy time."""
    assert pre_gen_hook.endpoint_name_problems(name)


@pytest.mark.parametrize("version", ["", " ", " 1", 'v"2', "v'2", "a\\b", "1\n2", "x" * 257])
def test_a_model_version_is_one_clean_line(pre_gen_hook: ModuleType, version: str) -> None:
    """The version is stamped on every prediction and lives in env vars and JSON."""
    assert pre_gen_hook.model_version_problems(version)


@pytest.mark.parametrize(
    "region", ["eu-west-1", "us-gov-west-1", "us-isob-east-1", "cn-north-1", "ap-southeast-5"]
)
def test_every_aws_region_shape_is_accepted(pre_gen_hook: ModuleType, region: str) -> None:
    """Regions beyond the prompt's list (an edited replay file) are fine if shaped like one."""
    assert pre_gen_hook.aws_region_problems(region) == []


@pytest.mark.parametrize("region", ["EU-WEST-1", "eu-west", "mars-1", "eu-west-1 ", "eu-west-1; rm -rf /"])
def test_strings_that_are_not_region_codes_are_refused(pre_gen_hook: ModuleType, region: str) -> None:
    """A typo in the region would only surface when boto3 fails to resolve an endpoint."""
    assert pre_gen_hook.aws_region_problems(region)


def test_a_fifo_name_is_refused_for_a_standard_queue_and_required_for_a_fifo_one(
    pre_gen_hook: ModuleType,
) -> None:
    """The queue's kind comes from its name: a mismatch would create the wrong kind of queue."""
    (standard,) = pre_gen_hook.named_resource_problems("events.fifo", "SQS queue")
    assert "sqs-fifo" in standard
    (fifo,) = pre_gen_hook.named_resource_problems("events", "SQS queue", fifo=True)
    assert ".fifo" in fifo
    assert pre_gen_hook.named_resource_problems("events.fifo", "SQS queue", fifo=True) == []


@pytest.mark.parametrize("name", ["", "a b", "a.b", "a" * 77, "q'1"])
def test_queue_names_sqs_refuses_are_refused(pre_gen_hook: ModuleType, name: str) -> None:
    """SQS allows 1-80 letters, digits, hyphens and underscores; `-dev` takes 4 of them."""
    assert pre_gen_hook.resource_name_problems(name) or pre_gen_hook.named_resource_problems(
        name, "SQS queue"
    )


def test_a_76_character_queue_name_is_accepted(pre_gen_hook: ModuleType) -> None:
    """The longest name whose dev-stage queue (`<name>-dev`) still fits SQS must stay usable."""
    assert pre_gen_hook.named_resource_problems("q" * 76, "SQS queue") == []


@pytest.mark.parametrize(
    ("kind", "longest"),
    [("SNS topic", 252), ("Kinesis stream", 124), ("DynamoDB table", 251)],
)
def test_each_destination_kind_allows_its_own_longest_name(
    pre_gen_hook: ModuleType, kind: str, longest: int
) -> None:
    """Topics, streams and tables have their own limits; each must leave room for `-dev`."""
    assert pre_gen_hook.named_resource_problems("p" * longest, kind) == []
    assert pre_gen_hook.named_resource_problems("p" * (longest + 1), kind)


@pytest.mark.parametrize(
    ("changes", "refused"),
    [
        ({"input_source": "sqs-fifo", "features_source_name": "features"}, {"features_source_name"}),
        ({"input_source": "sqs-fifo", "dead_letter_queue_name": "dead-letters"}, {"dead_letter_queue_name"}),
        ({"input_source": "sqs-fifo", "batch_size": "20", "maximum_batching_window_seconds": "1"},
         {"batch_size", "maximum_batching_window_seconds"}),
        ({"input_source": "kinesis", "features_source_name": "clicks.v2"}, set()),
        ({"input_source": "kinesis", "batch_size": "500"}, set()),
        ({"input_source": "kinesis", "max_receive_count": "1"}, set()),
        ({"output_destination": "dynamodb", "predictions_destination_name": "ab"},
         {"predictions_destination_name"}),
        ({"output_destination": "sns", "predictions_destination_name": "topic.v2"},
         {"predictions_destination_name"}),
        ({"partition_key_field": "user id"}, {"partition_key_field"}),
        ({"partition_key_field": "expires_at"}, {"partition_key_field"}),
        ({"prediction_ttl_days": "0"}, {"prediction_ttl_days"}),
        ({"payload_log_sample_rate": "1.5"}, {"payload_log_sample_rate"}),
        ({"payload_log_sample_rate": "nan"}, {"payload_log_sample_rate"}),
        ({"payload_log_sample_rate": "0.01"}, set()),
        ({"read_api_auth": "cognito"}, {"read_api_auth"}),
        ({"input_source": "kafka"}, {"input_source"}),
    ],
)  # fmt: skip
def test_answers_that_depend_on_the_source_and_destination_are_checked_against_them(
    pre_gen_hook: ModuleType, changes: dict[str, str], refused: set[str]
) -> None:
    """A name or setting valid for one source or destination can be wrong for another."""
    assert options_refused(pre_gen_hook, **changes) == refused


def test_the_fifo_defaults_are_valid_as_they_are(pre_gen_hook: ModuleType) -> None:
    """Choosing sqs-fifo must not leave the user to rename three queues by hand."""
    answers = default_answers({"input_source": "sqs-fifo"})
    assert answers["features_source_name"].endswith(".fifo")
    assert answers["predictions_destination_name"].endswith(".fifo")
    assert pre_gen_hook.validate(answers) == []


def test_the_three_queues_need_three_names(pre_gen_hook: ModuleType) -> None:
    """Reading and writing the same queue would loop predictions back in as features."""
    refused = options_refused(pre_gen_hook, predictions_destination_name="product-recommendations-features")
    assert refused == {"predictions_destination_name"}


CUSTOM_IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/recs-server:2.1"


@pytest.mark.parametrize(
    "image_uri",
    [
        "",
        CUSTOM_IMAGE,
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/recs-server:v2_1.0",
        "123456789012.dkr.ecr.us-gov-west-1.amazonaws.com/recs@sha256:" + "a1" * 32,
        "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/recs-server:2.1",
    ],
)
def test_an_ecr_image_pinned_by_tag_or_digest_is_accepted(pre_gen_hook: ModuleType, image_uri: str) -> None:
    """Empty is fine on its own: whether an image is needed depends on model_framework."""
    assert pre_gen_hook.image_uri_problems(image_uri) == []


@pytest.mark.parametrize(
    "image_uri",
    [
        "recs-server:2.1",
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/recs-server",
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/recs-server@sha256:abc",
        "12345.dkr.ecr.eu-west-1.amazonaws.com/recs-server:2.1",
        "public.ecr.aws/team/recs-server:2.1",
        "docker.io/library/python:3.12",
        CUSTOM_IMAGE + " ",
        CUSTOM_IMAGE + '"',
        5,
    ],
)
def test_anything_but_a_pinned_ecr_image_is_refused(pre_gen_hook: ModuleType, image_uri: object) -> None:
    """SageMaker hosting pulls from ECR; the deploy code checks the same pattern again."""
    assert pre_gen_hook.image_uri_problems(image_uri)


@pytest.mark.parametrize(
    ("changes", "refused"),
    [
        ({"model_framework": "xgboost"}, set()),
        ({"model_framework": "pytorch"}, set()),
        ({"model_framework": "huggingface"}, set()),
        ({"model_framework": "custom", "model_image_uri": CUSTOM_IMAGE}, set()),
        ({"model_framework": "custom", "model_image_uri": ""}, {"model_image_uri"}),
        ({"model_framework": "sklearn", "model_image_uri": CUSTOM_IMAGE}, {"model_image_uri"}),
        ({"model_framework": "custom", "model_image_uri": CUSTOM_IMAGE.replace("eu-west-1", "us-east-1")},
         {"model_image_uri"}),
        ({"model_framework": "custom", "model_image_uri": CUSTOM_IMAGE.replace("eu-west-1", "us-east-1"),
          "aws_region": "us-east-1"}, set()),
        ({"model_framework": "custom", "model_image_uri": CUSTOM_IMAGE, "aws_region": "mars"},
         {"aws_region"}),
        ({"model_framework": "custom", "model_image_uri": "recs-server:2.1"}, {"model_image_uri"}),
        ({"model_framework": "tensorflow"}, {"model_framework"}),
        ({"model_framework": "tensorflow", "model_image_uri": CUSTOM_IMAGE}, {"model_framework"}),
    ],
    ids=lambda value: ",".join(f"{k}:{v}" for k, v in value.items()) if isinstance(value, dict) else None,
)  # fmt: skip
def test_an_image_uri_comes_with_the_custom_framework_and_no_other(
    pre_gen_hook: ModuleType, changes: dict[str, str], refused: set[str]
) -> None:
    """A custom container needs its image, in the endpoint's region; a SageMaker container takes none."""
    assert options_refused(pre_gen_hook, **changes) == refused


@pytest.mark.parametrize(
    ("changes", "advice"),
    [
        ({"model_framework": "custom"}, "choose a framework whose container SageMaker provides"),
        ({"model_framework": "pytorch", "model_image_uri": CUSTOM_IMAGE},
         "clear it to serve with SageMaker's pytorch"),
        ({"model_framework": "custom", "model_image_uri": CUSTOM_IMAGE, "aws_region": "us-west-2"},
         "push or replicate the image to us-west-2"),
    ],
)  # fmt: skip
def test_a_refused_image_uri_says_how_to_fix_it(
    pre_gen_hook: ModuleType, changes: dict[str, str], advice: str
) -> None:
    """Each refusal names the way out: an image, a cleared answer, or the image in the right region."""
    (problem,) = pre_gen_hook.validate(default_answers(changes))
    assert problem.option == "model_image_uri"
    assert advice in problem.reason


@pytest.mark.parametrize(
    ("changes", "refused"),
    [
        ({"batch_size": "0"}, {"batch_size"}),
        ({"batch_size": "10001", "maximum_batching_window_seconds": "1"}, {"batch_size"}),
        ({"batch_size": "11"}, {"batch_size"}),
        ({"batch_size": "11", "maximum_batching_window_seconds": "1"}, set()),
        ({"batch_size": "10000", "maximum_batching_window_seconds": "300"}, set()),
        ({"maximum_batching_window_seconds": "301"}, {"maximum_batching_window_seconds"}),
        ({"maximum_concurrency": "1"}, {"maximum_concurrency"}),
        ({"maximum_concurrency": "1001"}, {"maximum_concurrency"}),
        ({"max_receive_count": "4"}, {"max_receive_count"}),
        ({"max_receive_count": "1001"}, {"max_receive_count"}),
        ({"lambda_memory_mb": "127"}, {"lambda_memory_mb"}),
        ({"lambda_memory_mb": "10240"}, set()),
        ({"lambda_timeout_seconds": "0"}, {"lambda_timeout_seconds"}),
        ({"lambda_timeout_seconds": "4", "visibility_timeout_seconds": "24"}, {"lambda_timeout_seconds"}),
        ({"lambda_timeout_seconds": "5", "visibility_timeout_seconds": "30"}, set()),
        (
            {"lambda_timeout_seconds": "901", "visibility_timeout_seconds": "43200"},
            {"lambda_timeout_seconds"},
        ),
        ({"lambda_timeout_seconds": "900", "visibility_timeout_seconds": "5400"}, set()),
        (
            {"lambda_timeout_seconds": "30", "visibility_timeout_seconds": "179"},
            {"visibility_timeout_seconds"},
        ),
        ({"visibility_timeout_seconds": "43201"}, {"visibility_timeout_seconds"}),
        ({"lambda_runtime": "python3.11"}, {"lambda_runtime"}),
        ({"endpoint_content_type": "text/csv"}, {"endpoint_content_type"}),
        ({"endpoint_call_mode": "stream"}, {"endpoint_call_mode"}),
        (
            {"endpoint_call_mode": "per-record", "records_per_endpoint_call": "2"},
            {"records_per_endpoint_call"},
        ),
        ({"endpoint_call_mode": "per-record", "records_per_endpoint_call": "1"}, set()),
        ({"records_per_endpoint_call": "10001"}, {"records_per_endpoint_call"}),
        ({"endpoint_concurrency": "0"}, {"endpoint_concurrency"}),
        ({"endpoint_concurrency": "65"}, {"endpoint_concurrency"}),
    ],
    ids=lambda value: ",".join(f"{k}:{v}" for k, v in value.items()) if isinstance(value, dict) else None,
)
def test_each_numeric_and_choice_rule_holds_at_its_boundary(
    pre_gen_hook: ModuleType, changes: dict[str, str], refused: set[str]
) -> None:
    """Every limit from Lambda, SQS and SageMaker is enforced exactly at its edge."""
    assert options_refused(pre_gen_hook, **changes) == refused


def test_all_problems_are_reported_together(pre_gen_hook: ModuleType) -> None:
    """A user should fix every answer in one edit of the replay file, not one per run."""
    changes = {
        "project_slug": "Bad Slug",
        "package_name": "import",
        "aws_region": "mars",
        "batch_size": "ten",
        "lambda_memory_mb": "1.5",
        "endpoint_concurrency": "",
    }
    assert options_refused(pre_gen_hook, **changes) >= set(changes)


def test_a_rule_between_two_options_waits_until_both_are_valid(pre_gen_hook: ModuleType) -> None:
    """A timeout of 1000 is already refused; also demanding visibility 6000 would mislead."""
    refused = options_refused(pre_gen_hook, lambda_timeout_seconds="1000", visibility_timeout_seconds="60")
    assert refused == {"lambda_timeout_seconds"}


def test_the_report_names_each_answer_and_how_to_rerun(pre_gen_hook: ModuleType) -> None:
    """The message must show what was given and point to `cookiecutter --replay`."""
    answers = default_answers() | {
        "batch_size": "20",
        "features_source_name": "in.fifo",
        "_template": "gh:acme/cookiecutter-sagemaker-streaming",
        "_repo_dir": "/home/me/.cookiecutters/cookiecutter-sagemaker-streaming",
        "_output_dir": "/home/me/src",
    }
    report = pre_gen_hook.report(pre_gen_hook.validate(answers), answers)
    assert "2 answers need fixing" in report
    assert 'batch_size = "20"' in report
    assert "maximum_batching_window_seconds" in report
    assert 'features_source_name = "in.fifo"' in report
    assert "cookiecutter --replay gh:acme/cookiecutter-sagemaker-streaming -o /home/me/src" in report
    assert "cookiecutter-sagemaker-streaming.json" in report


def test_main_exits_1_only_when_an_answer_is_refused(
    pre_gen_hook: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-zero exit is what makes cookiecutter stop and delete the half-made folder."""
    assert pre_gen_hook.main() == 0
    monkeypatch.setitem(pre_gen_hook.ANSWERS, "batch_size", "ten")
    assert pre_gen_hook.main() == 1


@pytest.mark.parametrize(
    "project_name", ["Émile's Recs!", "Churn Scores For Every Subscription Tier And More", "My_App  v2"]
)
def test_names_derived_from_any_project_name_pass_validation(
    pre_gen_hook: ModuleType, project_name: str
) -> None:
    """Most users type only a project name: the slug, package and AWS names derived from it must fit."""
    assert pre_gen_hook.validate(default_answers({"project_name": project_name})) == []


def test_the_shortest_function_timeout_follows_the_handlers_own_reserve(pre_gen_hook):
    """The hook cannot import the runtime it generates: its figures are read from the runtime's source."""
    runtime = TEMPLATE_DIR / "{{cookiecutter.project_slug}}" / "chalicelib" / "template_runtime"
    source = (runtime / "deadline.py").read_text(encoding="utf-8")
    constants = dict(re.findall(r"^([A-Z_]+) = (\d+)$", source, flags=re.MULTILINE))
    assert int(constants["DEFAULT_RESERVE_MS"]) == pre_gen_hook.DEFAULT_RESERVE_SECONDS * 1000
    assert int(constants["MIN_ENDPOINT_SHARE_MS"]) == pre_gen_hook.MIN_ENDPOINT_SHARE_SECONDS * 1000
