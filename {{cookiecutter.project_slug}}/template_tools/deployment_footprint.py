# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""What the Lambda function costs before its first record: package size and cold-start import time."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .deploy.package import vendor_model_input_schema

# What `chalice package` reads: the app, its library, its config and its requirements.
PACKAGED_SOURCES = ("app.py", "chalicelib", ".chalice/config.json", "requirements.txt")

# Each snippet runs in a fresh interpreter and prints the seconds its cold work took. The app
# side is what a Lambda cold start pays before the first record: importing app.py and creating
# the handler's clients (batch_processor()). The reference is the least any boto3 handler pays.
_APP_COLD_START = (
    "import time; started = time.perf_counter(); import app; imported = time.perf_counter();"
    " app.batch_processor(); done = time.perf_counter(); print(imported - started, done - started)"
)
_BOTO3_COLD_START = (
    "import time; started = time.perf_counter(); import boto3; imported = time.perf_counter();"
    " boto3.client('sqs'); boto3.client('sagemaker-runtime'); done = time.perf_counter();"
    " print(imported - started, done - started)"
)


@dataclass(frozen=True)
class DeploymentPackage:
    """The zip `chalice package` built, and the seconds it took."""

    zip_path: Path
    size_bytes: int
    seconds: float


@dataclass(frozen=True)
class ColdStart:
    """Median cold-start seconds over several fresh interpreters."""

    app_import: float
    app_import_and_clients: float
    boto3_import_and_clients: float
    repetitions: int
    measured_in: str
    # app / boto3 of each alternating pair of interpreters: their spread says how far one
    # machine's noise moves the ratio.
    pair_ratios: tuple[float, ...] = ()

    @property
    def ratio(self) -> float:
        return self.app_import_and_clients / self.boto3_import_and_clients

    @property
    def ratio_spread(self) -> tuple[float, float]:
        """The lowest and highest ratio of one pair (the median ratio when there are none)."""
        return (min(self.pair_ratios), max(self.pair_ratios)) if self.pair_ratios else (self.ratio, self.ratio)


def chalice_executable() -> Path:
    """The `chalice` script of this interpreter's environment (`python -m chalice` does not run it)."""
    return Path(sys.executable).with_name("chalice")


def build_package(project_dir: Path, work_dir: Path, stage: str, environment: Mapping[str, str]) -> DeploymentPackage:
    """Run `chalice package` on a copy of the project, so no .chalice/deployments cache is left behind."""
    source = work_dir / "source"
    for name in PACKAGED_SOURCES:
        origin = project_dir / name
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
        elif origin.exists():
            shutil.copy2(origin, target)
    vendor_model_input_schema(project_dir, source)
    output = work_dir / "package"
    started = time.perf_counter()
    subprocess.run(
        [str(chalice_executable()), "package", "--stage", stage, str(output)],
        cwd=source,
        env=dict(environment),
        check=True,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    zip_path = output / "deployment.zip"
    return DeploymentPackage(zip_path=zip_path, size_bytes=zip_path.stat().st_size, seconds=seconds)


def measure_cold_start(
    code_dir: Path, environment: Mapping[str, str], repetitions: int, python: str = sys.executable
) -> ColdStart:
    """Time the app's and the reference's cold work in alternating fresh interpreters; take medians.

    `python` is the interpreter to start (another runtime's, with boto3 installed, as Lambda's
    runtime has it); by default this one.

    `code_dir` should be the unpacked deployment package: that is what Lambda imports, vendored
    chalice included. Bytecode is neither read from nor written to it (-B, and the package holds
    none), as on Lambda, whose task directory is read-only.
    """
    compile_sdk(python, environment)
    app_imports: list[float] = []
    app_totals: list[float] = []
    reference_totals: list[float] = []
    for _ in range(repetitions):
        imported, total = _run_cold(_APP_COLD_START, code_dir, environment, python)
        app_imports.append(imported)
        app_totals.append(total)
        reference_totals.append(_run_cold(_BOTO3_COLD_START, code_dir, environment, python)[1])
    return ColdStart(
        app_import=statistics.median(app_imports),
        app_import_and_clients=statistics.median(app_totals),
        boto3_import_and_clients=statistics.median(reference_totals),
        repetitions=repetitions,
        measured_in=str(code_dir),
        pair_ratios=tuple(app / reference for app, reference in zip(app_totals, reference_totals, strict=True)),
    )


# The SDK that Lambda's Python runtime ships, with what it imports.
_SDK_MODULES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")


def compile_sdk(python: str, environment: Mapping[str, str]) -> None:
    """Compile `python`'s boto3 and its dependencies to bytecode, as Lambda's runtime ships them.

    A venv built by uv, or used with PYTHONDONTWRITEBYTECODE=1, has no .pyc files, and with -B
    every interpreter would compile botocore from source: that tripled the reference's time on
    one machine and made the app's ratio look better than on Lambda. compileall writes the
    files whatever PYTHONDONTWRITEBYTECODE says; only the SDK is compiled, never the package.
    """
    locate = (
        "import importlib.util, os; "
        f"specs = [importlib.util.find_spec(name) for name in {_SDK_MODULES!r}]; "
        "print('\\n'.join(os.path.dirname(spec.origin) if spec.submodule_search_locations else spec.origin "
        "for spec in specs if spec and spec.origin))"
    )
    env = {key: value for key, value in environment.items() if key != "PYTHONPATH"} | {
        "PATH": os.environ.get("PATH", "")
    }
    found = subprocess.run([python, "-E", "-c", locate], env=env, check=True, capture_output=True, text=True)
    paths = [line for line in found.stdout.splitlines() if line]
    subprocess.run(
        [python, "-E", "-m", "compileall", "-q", "-j", "0", *paths], env=env, check=True, capture_output=True
    )


def unpack(zip_path: Path, target: Path) -> Path:
    """Unzip the package where Lambda would, into `target`."""
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(target)
    return target


def _run_cold(snippet: str, code_dir: Path, environment: Mapping[str, str], python: str) -> tuple[float, float]:
    # -E ignores PYTHONPATH, so only the code directory (first on sys.path for -c) and the
    # environment's site-packages are importable, as on Lambda.
    env = dict(environment)
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [python, "-E", "-B", "-c", snippet],
        cwd=code_dir,
        env=env | {"PATH": os.environ.get("PATH", "")},
        check=True,
        capture_output=True,
        text=True,
    )
    imported, total = result.stdout.split()
    return float(imported), float(total)
