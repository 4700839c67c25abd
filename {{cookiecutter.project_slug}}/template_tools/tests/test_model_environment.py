# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Tests for the model's own environment: its virtualenv, and the worker that runs it for the local endpoint.

The models here are tiny ones written into tmp_path; their requirements.txt lists tomli-w, a
small pure-Python package the development venv does not hold, so a model that can import it is
running in its own venv. Every venv goes under tmp_path (MODEL_VENV_ROOT), never .venv-model.
"""

import importlib.metadata
import importlib.util
import io
import json
import os
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from template_tools import model_environment
from template_tools.endpoint_server import MODEL_WORKER, LocalEndpoint, ModelLoadError
from template_tools.model_environment import STAMP_FILE, ModelEnvironmentError, model_python

# Pure Python, a few kilobytes, and not in requirements-dev.lock.
MODEL_PACKAGE = "tomli-w==1.2.0"
MODEL_MODULE = "tomli_w"
ENDPOINT = "any-endpoint"
WAIT_SECONDS = 10

# A SageMaker inference.py in miniature: it answers each JSON record by echoing it through the model's package.
TOML_MODEL = """
import json
import tomli_w


def model_fn(model_dir):
    return {"model_dir": model_dir}


def input_fn(body, content_type):
    record = json.loads(body)
    if "fail" in record:
        raise ValueError(f"record 0: {record['fail']}")
    if "crash" in record:
        raise RuntimeError(record["crash"])
    return record


def predict_fn(record, model):
    return {"toml": tomli_w.dumps(record)}


def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


def write_model(directory: Path, inference: str, requirements: str = f"{MODEL_PACKAGE}\n") -> Path:
    """A model directory as SageMaker unpacks it: code/inference.py and code/requirements.txt."""
    code = directory / "code"
    code.mkdir(parents=True)
    (code / "inference.py").write_text(textwrap.dedent(inference), encoding="utf-8")
    (code / "requirements.txt").write_text(requirements, encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def venv_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by the module's tests, so the package is installed once per test process."""
    return tmp_path_factory.mktemp("venv-model")


@pytest.fixture
def model_venvs(venv_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where model_python builds, for code that does not take venv_root (LocalEndpoint)."""
    monkeypatch.setenv(model_environment.VENV_ROOT_VARIABLE, str(venv_root))
    return venv_root


@pytest.fixture
def toml_model(tmp_path: Path) -> Path:
    return write_model(tmp_path / "toml-model", TOML_MODEL)


def invoke(endpoint: LocalEndpoint, record: dict) -> tuple[int, dict[str, str], dict]:
    """One InvokeEndpoint request straight to the endpoint's handler: status, headers, JSON body."""
    answer = endpoint.handle_invocation(ENDPOINT, json.dumps(record).encode(), {"content-type": "application/json"})
    return answer.status, answer.headers, json.loads(answer.body)


def test_the_models_venv_holds_its_packages_and_the_dev_venv_does_not(toml_model: Path, venv_root: Path) -> None:
    """A package only the model lists must be importable by the model and only by the model."""
    python = model_python(toml_model, venv_root=venv_root, progress=io.StringIO())
    assert python.is_relative_to(venv_root)
    check = "import importlib.metadata, tomli_w; print(importlib.metadata.version('pytest'))"
    result = subprocess.run([str(python), "-c", check], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # pytest at the dev venv's version: the team's model tests run there.
    assert result.stdout.strip() == importlib.metadata.version("pytest")
    assert importlib.util.find_spec(MODEL_MODULE) is None


def test_a_second_call_reuses_the_venv_without_rebuilding(toml_model: Path, venv_root: Path) -> None:
    """The build happens once; later runs (every `make test`, every local run) start at once."""
    first = model_python(toml_model, venv_root=venv_root, progress=io.StringIO())
    stamp = first.parent.parent / STAMP_FILE
    built_at = stamp.stat().st_mtime_ns
    progress = io.StringIO()
    assert model_python(toml_model, venv_root=venv_root, progress=progress) == first
    assert stamp.stat().st_mtime_ns == built_at
    assert progress.getvalue() == ""


def test_a_first_build_says_what_it_installs_and_how_long_it_took(tmp_path: Path) -> None:
    """A first run that goes quiet for seconds looks hung; one line before and one after say why."""
    model = write_model(tmp_path / "model", TOML_MODEL)
    progress = io.StringIO()
    model_python(model, venv_root=tmp_path / "venvs", progress=progress)
    before, after = progress.getvalue().splitlines()
    assert "Installing the model's packages from" in before and "(first run only)" in before
    assert after.startswith("Installed the model's packages in ")


def test_concurrent_callers_build_the_venv_once(tmp_path: Path) -> None:
    """pytest-xdist workers all ask for the model's python at once; only one may install."""
    model = write_model(tmp_path / "model", TOML_MODEL)
    progress = [io.StringIO() for _ in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        pythons = set(pool.map(lambda out: model_python(model, venv_root=tmp_path / "venvs", progress=out), progress))
    assert len(pythons) == 1
    assert sum("Installing" in out.getvalue() for out in progress) == 1


def test_other_requirements_get_another_venv(toml_model: Path, tmp_path: Path, venv_root: Path) -> None:
    """Editing requirements.txt must take effect, not reuse a venv built from the old list."""
    other = write_model(tmp_path / "other", TOML_MODEL, requirements=f"# pinned\n{MODEL_PACKAGE}\n")
    first = model_python(toml_model, venv_root=venv_root, progress=io.StringIO())
    assert model_python(other, venv_root=venv_root, progress=io.StringIO()) != first


@pytest.mark.parametrize("requirements", ["", "# the standard library is enough\n\n"])
def test_a_model_without_packages_runs_on_this_python(tmp_path: Path, requirements: str) -> None:
    """Nothing to install: no venv to build and wait for."""
    model = write_model(tmp_path / "model", TOML_MODEL, requirements=requirements)
    assert model_python(model, venv_root=tmp_path / "venvs") == Path(sys.executable)
    assert not (tmp_path / "venvs").exists()


def test_a_failed_install_says_why_and_is_tried_again_next_time(tmp_path: Path) -> None:
    """The installer's own words reach the team, and a fixed requirements.txt then builds."""
    model = write_model(tmp_path / "model", TOML_MODEL, requirements="tomli-w ==== 1\n")
    with pytest.raises(ModelEnvironmentError, match="(?s)installing the model's packages failed.*requirements.txt"):
        model_python(model, venv_root=tmp_path / "venvs", progress=io.StringIO())
    assert not list((tmp_path / "venvs").glob(f"*/{STAMP_FILE}"))


def test_model_tests_run_on_the_models_python_and_pass_their_exit_code(
    toml_model: Path, model_venvs: Path, tmp_path: Path
) -> None:
    """`make test` must fail when a model test fails, and the test must see the model's packages."""
    tests = tmp_path / "model_tests"
    tests.mkdir()
    (tests / "test_passing.py").write_text("import tomli_w\n\ndef test_passes():\n    assert tomli_w.dumps({}) == ''\n")
    (tests / "test_failing.py").write_text("def test_fails():\n    assert False\n")
    command = [sys.executable, "-m", "template_tools.model_environment", "--model-dir", str(toml_model), "--pytest"]
    project = model_environment.PROJECT_DIR
    passing = subprocess.run([*command, "-q", str(tests / "test_passing.py")], cwd=project, capture_output=True)
    failing = subprocess.run([*command, "-q", str(tests / "test_failing.py")], cwd=project, capture_output=True)
    assert passing.returncode == 0, passing.stdout.decode()
    assert failing.returncode == 1, failing.stdout.decode()


def test_the_endpoint_serves_a_model_that_needs_its_own_package(toml_model: Path, model_venvs: Path) -> None:
    """The local endpoint runs the model on the model's python, not the development venv's."""
    with LocalEndpoint(toml_model) as endpoint:
        status, headers, body = invoke(endpoint, {"user": "u-1"})
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert body == {"toml": 'user = "u-1"\n'}


def test_model_exceptions_become_model_errors_as_in_sagemaker(toml_model: Path, model_venvs: Path) -> None:
    """A ValueError is the caller's fault (400 inside the ModelError); anything else the model's (500)."""
    with LocalEndpoint(toml_model) as endpoint:
        client_status, client_headers, client_error = invoke(endpoint, {"fail": "field 'id' is required"})
        server_status, _headers, server_error = invoke(endpoint, {"crash": "out of memory"})
        recovered_status, _headers, _body = invoke(endpoint, {"user": "u-1"})
    assert (client_status, client_headers["x-amzn-ErrorType"]) == (424, "ModelError")
    assert client_error["OriginalStatusCode"] == 400
    assert client_error["OriginalMessage"] == "record 0: field 'id' is required"
    assert server_status == 424
    assert server_error["OriginalStatusCode"] == 500
    assert server_error["OriginalMessage"] == "RuntimeError: out of memory"
    assert recovered_status == 200


def test_a_model_that_fails_to_load_raises_model_load_error_with_the_reason(tmp_path: Path) -> None:
    """A missing artifact must stop the endpoint at start, saying which model and why."""
    model = write_model(
        tmp_path / "model",
        """
        from pathlib import Path

        def model_fn(model_dir):
            return (Path(model_dir) / "weights.bin").read_bytes()
        """,
        requirements="",
    )
    with pytest.raises(ModelLoadError) as raised, LocalEndpoint(model):
        pass
    message = str(raised.value)
    assert str(model) in message
    assert "FileNotFoundError" in message and "weights.bin" in message
    assert "build it first" in message


def test_a_model_that_prints_to_stdout_still_answers(tmp_path: Path) -> None:
    """Prints at import, in model_fn and per request go to stderr, never into the worker's answers."""
    model = write_model(
        tmp_path / "model",
        """
        import json
        import os
        import sys

        print("importing the model")

        def model_fn(model_dir):
            print("loading", model_dir)
            os.write(1, b"written straight to file descriptor 1\\n")
            return None

        def input_fn(body, content_type):
            print("a request")
            sys.stdout.write("no newline")
            return json.loads(body)

        def predict_fn(record, model):
            print(json.dumps({"ok": False, "error": "a print that looks like an answer"}))
            return record

        def output_fn(prediction, accept):
            return json.dumps(prediction), "application/json"
        """,
        requirements="",
    )
    with LocalEndpoint(model) as endpoint:
        for number in range(3):
            assert invoke(endpoint, {"n": number})[::2] == (200, {"n": number})


def test_the_worker_exits_when_its_stdin_closes(toml_model: Path, model_venvs: Path) -> None:
    """The endpoint stops its worker by closing stdin; a worker that stayed would be an orphan."""
    python = model_python(toml_model)
    worker = subprocess.Popen(
        [str(python), str(MODEL_WORKER), "--model-dir", str(toml_model)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert json.loads(worker.stdout.readline()) == {"ready": True}
    worker.stdin.close()
    assert worker.wait(timeout=WAIT_SECONDS) == 0
    worker.stdout.close()


def test_the_worker_does_not_outlive_an_endpoint_whose_process_is_killed(toml_model: Path, model_venvs: Path) -> None:
    """SIGKILL leaves the endpoint no chance to clean up; the worker must still go (stdin EOF)."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from template_tools.endpoint_server import LocalEndpoint
        endpoint = LocalEndpoint(Path({str(toml_model)!r})).start()
        print(endpoint._worker._process.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=model_environment.PROJECT_DIR, stdout=subprocess.PIPE, text=True
    )
    try:
        worker_pid = int(parent.stdout.readline())
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
    deadline = time.monotonic() + WAIT_SECONDS
    while _running(worker_pid):
        assert time.monotonic() < deadline, f"worker {worker_pid} outlived its endpoint"
        time.sleep(0.05)


def _running(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting for a reaper."""
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        return False
    return state not in {"Z", "X"}
