"""Tests for the example model: model/code/inference.py, called the way a SageMaker framework container calls it.

These run in the model's own virtualenv (model/code/requirements.txt plus pytest), as the model
runs in its container: `make test` runs them there, through
`python -m template_tools.model_environment --pytest tests/test_model.py`. So they import only
the standard library, pytest, the model's packages and this project's training package; nothing
from the development venv (boto3, moto, chalicelib, template_tools).
"""

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from {{ cookiecutter.package_name }}.clickstream import build_catalog
from {{ cookiecutter.package_name }}.train import train_model

PROJECT_DIR = Path(__file__).resolve().parents[1]
CODE_DIR = PROJECT_DIR / "model" / "code"
JSON = "application/json"
JSON_LINES = "application/jsonlines"
# Enough sessions for every catalog item to have neighbours, small enough to train in a blink.
TEST_TRAINING_SESSIONS = 2000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model directory as SageMaker would unpack it: code/ plus a freshly trained artifact."""
    directory = tmp_path_factory.mktemp("model")
    shutil.copytree(CODE_DIR, directory / "code")
    train_model(directory, sessions=TEST_TRAINING_SESSIONS)
    return directory


@pytest.fixture(scope="module")
def inference() -> ModuleType:
    """inference.py, imported as the container imports it: with code/ on sys.path."""
    if str(CODE_DIR) not in sys.path:
        sys.path.insert(0, str(CODE_DIR))
    spec = importlib.util.spec_from_file_location("inference", CODE_DIR / "inference.py")
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, as a normal import would: dataclasses look their module up.
    sys.modules["inference"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model(inference: ModuleType, model_dir: Path) -> object:
    """The loaded model, as model_fn returns it at container start."""
    return inference.model_fn(str(model_dir))


def serve(
    inference: ModuleType, model: object, body: str, content_type: str, accept: str | None = None
) -> tuple[str, str]:
    """Run one request through input_fn -> predict_fn -> output_fn."""
    data = inference.input_fn(body.encode("utf-8"), content_type)
    return inference.output_fn(inference.predict_fn(data, model), accept)


def record(user_id: str = "u-0042", recent_items: tuple[str, ...] = ("i-0012",), **extra) -> dict:
    """A valid model input record unless `extra` says otherwise."""
    return {"user_id": user_id, "recent_items": list(recent_items), **extra}


def test_a_single_record_gets_a_single_output_object(inference, model) -> None:
    """The simplest call a team makes by hand must answer in the contract's output shape."""
    body, content_type = serve(inference, model, json.dumps(record()), JSON)
    output = json.loads(body)
    assert content_type == JSON
    assert output["user_id"] == "u-0042"
    assert len(output["items"]) == 5
    assert all(set(item) == {"item_id", "score"} for item in output["items"])


def test_a_batch_answers_its_instances_in_order(inference, model) -> None:
    """The handler maps predictions back to messages by position, so order is the contract."""
    users = [f"u-{number:04d}" for number in range(7)]
    batch = {"instances": [record(user, ("i-0100",)) for user in users]}
    body, _content_type = serve(inference, model, json.dumps(batch), JSON)
    assert [output["user_id"] for output in json.loads(body)["predictions"]] == users


def test_json_lines_get_one_output_line_per_record_in_order(inference, model) -> None:
    """The jsonlines option must round-trip like the JSON batch does."""
    users = ["u-0003", "u-0001", "u-0002"]
    body = "".join(json.dumps(record(user)) + "\n" for user in users)
    answer, content_type = serve(inference, model, body, JSON_LINES)
    assert content_type == JSON_LINES
    assert [json.loads(line)["user_id"] for line in answer.splitlines()] == users


def test_accept_can_ask_for_json_lines_from_a_json_batch(inference, model) -> None:
    """The response format follows Accept when the client names one."""
    batch = {"instances": [record(), record("u-0043")]}
    answer, content_type = serve(inference, model, json.dumps(batch), JSON, JSON_LINES)
    assert content_type == JSON_LINES
    assert len(answer.splitlines()) == 2


def test_content_type_parameters_such_as_charset_are_ignored(inference, model) -> None:
    """Clients add `; charset=utf-8` freely; refusing it would be a needless outage."""
    body, _content_type = serve(inference, model, json.dumps(record()), f"{JSON}; charset=utf-8")
    assert json.loads(body)["user_id"] == "u-0042"


@pytest.mark.parametrize("k", [1, 3, 50])
def test_k_sets_how_many_items_come_back(inference, model, k: int) -> None:
    """Pages show different numbers of slots; k is how they ask for them."""
    body, _content_type = serve(inference, model, json.dumps(record(k=k)), JSON)
    assert len(json.loads(body)["items"]) == k


def test_items_the_user_just_viewed_are_never_recommended(inference, model) -> None:
    """Recommending what someone is looking at wastes the slot."""
    seen = ("i-0012", "i-0100", "i-0200", "i-0300")
    body, _content_type = serve(inference, model, json.dumps(record(recent_items=seen, k=50)), JSON)
    recommended = [item["item_id"] for item in json.loads(body)["items"]]
    assert not set(recommended) & set(seen)
    assert len(recommended) == len(set(recommended)) == 50


def test_recommendations_come_mostly_from_the_viewed_items_category(inference, model) -> None:
    """The model must learn the clickstream's structure, not return noise."""
    catalog = build_catalog()
    category = {item.item_id: item.category for item in catalog.items}
    viewed = catalog.by_category["camping"][0].item_id
    body, _content_type = serve(inference, model, json.dumps(record(recent_items=(viewed,))), JSON)
    items = json.loads(body)["items"]
    assert sum(category[item["item_id"]] == "camping" for item in items) >= 4
    assert [item["score"] for item in items] == sorted((i["score"] for i in items), reverse=True)


def test_unknown_items_fall_back_to_best_sellers_with_zero_score(inference, model) -> None:
    """A new user or a new item must still get recommendations, marked as a fallback."""
    for recent_items in [(), ("i-9999",)]:
        body, _content_type = serve(inference, model, json.dumps(record(recent_items=recent_items)), JSON)
        items = json.loads(body)["items"]
        assert [item["item_id"] for item in items] == model.popular[:5]
        assert {item["score"] for item in items} == {0.0}


@pytest.mark.parametrize(
    ("bad_record", "field"),
    [
        ({"recent_items": ["i-0012"]}, "user_id"),
        ({"user_id": "", "recent_items": ["i-0012"]}, "user_id"),
        ({"user_id": "u-0042"}, "recent_items"),
        ({"user_id": "u-0042", "recent_items": "i-0012"}, "recent_items"),
        ({"user_id": "u-0042", "recent_items": [12]}, "recent_items"),
        (record(k=0), "k"),
        (record(k=51), "k"),
        (record(k=True), "k"),
        (record(k="5"), "k"),
    ],
)
def test_an_invalid_record_raises_value_error_naming_the_field(inference, bad_record: dict, field: str) -> None:
    """The dead-letter reason must tell a producer exactly what to fix."""
    with pytest.raises(ValueError, match=f"record 0: .*{field}"):
        inference.input_fn(json.dumps(bad_record), JSON)


def test_k_defaults_to_the_schemas_default(inference, model) -> None:
    """input.schema.json's default fills in a k the record leaves out."""
    assert inference.input_fn(json.dumps(record()), JSON).records[0]["k"] == 5


def test_one_bad_record_fails_the_whole_batch_and_names_its_index(inference) -> None:
    """The handler isolates the culprit by retrying records alone; the index speeds that up."""
    batch = {"instances": [record(), record(), {"user_id": "u-0042"}]}
    with pytest.raises(ValueError, match=r"record 2: .*\['recent_items'\]"):
        inference.input_fn(json.dumps(batch), JSON)
    lines = json.dumps(record()) + "\nnot json\n"
    with pytest.raises(ValueError, match="record 1 is not valid JSON"):
        inference.input_fn(lines, JSON_LINES)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        ("{not json", JSON, "request body is not valid JSON"),
        ('["a list"]', JSON, "record 0: .* must be object"),
        ('{"instances": "all"}', JSON, "field 'instances' must be a list"),
        (json.dumps(record()), "text/csv", "content type 'text/csv' is not supported"),
    ],
)
def test_a_malformed_request_raises_value_error(inference, body, content_type, message) -> None:
    """Every request the model cannot read must become a client error, never a crash."""
    with pytest.raises(ValueError, match=message):
        inference.input_fn(body, content_type)


def test_model_fn_refuses_an_artifact_it_does_not_understand(inference, tmp_path: Path) -> None:
    """Deploying the wrong artifact must fail at start-up, not answer nonsense."""
    (tmp_path / "cooccurrence.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="expected format"):
        inference.model_fn(str(tmp_path))
