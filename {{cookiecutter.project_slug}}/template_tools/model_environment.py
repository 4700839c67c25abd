# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The Python that runs the model: a virtualenv holding `model/code/requirements.txt`, as in the container.

SageMaker's framework containers pip-install `code/requirements.txt` before they import
inference.py. Locally the model gets the same: its own virtualenv under `.venv-model/`, built
once per set of requirements (and Python version), apart from the development venv, so a
package the model needs but does not list fails here instead of in AWS, and the model's
packages cannot change the versions the handler and its tests run with.

    python -m template_tools.model_environment                      # build if needed, print its python
    python -m template_tools.model_environment --pytest tests/test_model.py   # the team's model tests

Standard library only: it runs before anything else is installed.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

# The same folder as template_tools.stage.PROJECT_DIR, without importing Chalice to find it.
PROJECT_DIR = Path(__file__).resolve().parent.parent
VENV_ROOT_VARIABLE = "MODEL_VENV_ROOT"
DEFAULT_VENV_ROOT = PROJECT_DIR / ".venv-model"
# Written last: a venv without it is a build that was interrupted, and is built again.
STAMP_FILE = ".model-environment-complete"
# How much of a failed installer's output the error repeats.
OUTPUT_TAIL_LINES = 25


class ModelEnvironmentError(RuntimeError):
    """The model's packages could not be installed; the message says why and what to do."""


def model_python(model_dir: Path, *, progress: TextIO = sys.stderr, venv_root: Path | None = None) -> Path:
    """The Python that runs the model in `model_dir`, building its virtualenv on first use.

    A model whose requirements.txt lists no packages runs on this Python. `venv_root` (or the
    MODEL_VENV_ROOT environment variable) moves `.venv-model`, e.g. into a test's tmp_path.
    """
    requirements_file = Path(model_dir) / "code" / "requirements.txt"
    text = requirements_file.read_text(encoding="utf-8") if requirements_file.exists() else ""
    if not listed_packages(text):
        return Path(sys.executable)
    test_runner = _test_runner_requirement()
    root = venv_root or Path(os.environ.get(VENV_ROOT_VARIABLE) or DEFAULT_VENV_ROOT)
    venv = root / _environment_key(text, test_runner)
    python = venv / "bin" / "python"
    if (venv / STAMP_FILE).exists():
        return python
    root.mkdir(parents=True, exist_ok=True)
    # pytest-xdist workers and parallel runs may all ask at once: one builds, the others wait
    # for it and then find the stamp.
    with _exclusive(venv.with_name(venv.name + ".lock")):
        if not (venv / STAMP_FILE).exists():
            _build(venv, requirements_file, test_runner, progress)
    return python


def listed_packages(requirements_text: str) -> list[str]:
    """The requirement lines that are not blank or comments."""
    lines = (line.split("#", 1)[0].strip() for line in requirements_text.splitlines())
    return [line for line in lines if line]


def find_uv() -> str | None:
    """The uv to install with, or None for python -m venv and pip.

    UV set to an executable wins (the Makefile exports the one it bootstrapped); UV set but
    empty means pip, as `make UV=` does; otherwise uv on PATH, then the Makefile's bootstrap.
    """
    configured = os.environ.get("UV")
    if configured is not None:
        if not configured:
            return None
        for candidate in (Path(configured), PROJECT_DIR / configured):
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    on_path = shutil.which("uv")
    if on_path:
        return on_path
    bootstrapped = PROJECT_DIR / ".venv-uv" / "bin" / "uv"
    return str(bootstrapped) if os.access(bootstrapped, os.X_OK) else None


def _test_runner_requirement() -> str:
    """pytest at the development venv's version: the team's model tests run in the model's venv."""
    try:
        return f"pytest=={importlib.metadata.version('pytest')}"
    except importlib.metadata.PackageNotFoundError:
        return "pytest"


def _environment_key(requirements_text: str, test_runner: str) -> str:
    """Changes whenever what the venv would hold changes, so an edited requirements.txt gets a new one."""
    identity = f"{requirements_text}\n{sys.version}\n{test_runner}"
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:12]


@contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(venv: Path, requirements_file: Path, test_runner: str, progress: TextIO) -> None:
    """Create the venv and install the requirements into it; the stamp goes last."""
    print(
        f"Installing the model's packages from {_shown(requirements_file)} into {_shown(venv)} (first run only)...",
        file=progress,
        flush=True,
    )
    started = time.monotonic()
    # What is there without a stamp is an interrupted build: start again from nothing.
    shutil.rmtree(venv, ignore_errors=True)
    python = venv / "bin" / "python"
    install = ["-r", str(requirements_file.resolve()), test_runner]
    uv = find_uv()
    if uv:
        steps = [
            [uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
            [uv, "pip", "install", "--python", str(python), *install],
        ]
    else:
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", *install],
        ]
    for command in steps:
        _run(command, requirements_file)
    (venv / STAMP_FILE).write_text(f"{requirements_file.resolve()}\n", encoding="utf-8")
    print(f"Installed the model's packages in {time.monotonic() - started:.1f} s.", file=progress, flush=True)


def _run(command: list[str], requirements_file: Path) -> None:
    # uv must use this Python, never download another.
    environment = dict(os.environ, UV_PYTHON_DOWNLOADS="never")
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)
    if result.returncode == 0:
        return
    tail = "\n".join(result.stdout.strip().splitlines()[-OUTPUT_TAIL_LINES:])
    raise ModelEnvironmentError(
        f"installing the model's packages failed (`{' '.join(command[:3])} ...` exited {result.returncode}):\n"
        f"{tail}\n"
        f"Fix {_shown(requirements_file)} (each line a package SageMaker's container can pip-install, "
        "pinned with ==) and run again; the next run starts the install over."
    )


def _shown(path: Path) -> str:
    """A path relative to the project when it is inside it: shorter, and what the team recognises."""
    try:
        return str(path.resolve().relative_to(PROJECT_DIR))
    except ValueError:
        return str(path)


def run_model_tests(model_dir: Path, pytest_args: Sequence[str]) -> int:
    """Run pytest on the model's Python from the project folder; returns pytest's exit code.

    The project's conftest files and addopts belong to the development venv (moto, xdist and
    the machinery's fixtures are not in the model's venv), so neither applies here.
    """
    python = model_python(model_dir)
    command = [str(python), "-m", "pytest", "-p", "no:cacheprovider", "--noconftest", "-o", "addopts=", *pytest_args]
    return subprocess.run(command, cwd=PROJECT_DIR).returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=PROJECT_DIR / "model")
    parser.add_argument(
        "--pytest",
        nargs=argparse.REMAINDER,
        metavar="ARGS",
        help="run pytest with these arguments on the model's Python instead of printing its path (last option)",
    )
    args = parser.parse_args(argv)
    try:
        if args.pytest is not None:
            return run_model_tests(args.model_dir, args.pytest)
        print(model_python(args.model_dir))
    except ModelEnvironmentError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
