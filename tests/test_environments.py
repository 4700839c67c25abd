"""Environments: built with uv from hashed locks, with pip (`make UV=`) as the tested fallback.

The installs here are real but tiny: a baked project's `requirements-dev.lock` is swapped for one
that pins `six` (one small pure-Python wheel, from PyPI), so the Makefile's own rules run in seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from baking import TEMPLATE_DIR, bake_into

PROJECT_TEMPLATE = TEMPLATE_DIR / "{{cookiecutter.project_slug}}"
PROJECT_LOCK = PROJECT_TEMPLATE / "requirements-dev.lock"
TEST_LOCK = TEMPLATE_DIR / "requirements-test.lock"
UV_LOCK = PROJECT_TEMPLATE / "requirements-uv.lock"
LOCKS = [PROJECT_LOCK, TEST_LOCK, UV_LOCK]

# Hashes from `echo six==1.17.0 | uv pip compile --universal --generate-hashes -` (wheel and sdist).
SIX_LOCK = """six==1.17.0 \\
    --hash=sha256:4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274 \\
    --hash=sha256:ff70335d468e7eb6ec65b95b99d3a2836546063f63acc5171de367e834932a81
"""
WRONG_HASH_LOCK = f"six==1.17.0 --hash=sha256:{'0' * 64}\n"
UNHASHED_LOCK = "six==1.17.0\n"
# Generous, and only there so that a stalled download fails the test instead of hanging it.
MAKE_TIMEOUT_SECONDS = 300


def requirement_lines(path: Path) -> list[str]:
    """Return a requirements file's requirements, each with its continuation lines joined."""
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    lines = (line.split(" #", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def pins(path: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """Map each package a lock pins (normalised name) to its version and hashes."""
    pinned = {}
    for line in requirement_lines(path):
        match = re.match(r"([A-Za-z0-9][\w.-]*)==(\S+)", line)
        assert match is not None, line
        name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
        pinned[name] = (match.group(2), frozenset(re.findall(r"--hash=(\S+)", line)))
    return pinned


def versions(path: Path) -> dict[str, str]:
    """Map each `name==version` a requirements file names to its version, with Jinja tags dropped."""
    text = re.sub(r"\{%.*?%\}", "", path.read_text(encoding="utf-8"))
    found = re.findall(r"^([A-Za-z0-9][\w.-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", text, flags=re.MULTILINE)
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in found}


def make_env(path: str | None = None) -> dict[str, str]:
    """Return the environment for a nested make: none of the outer make's variables, nor pytest's."""
    outer = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "VIRTUAL_ENV")
    env = {
        key: value for key, value in os.environ.items() if key not in outer and not key.startswith("PYTEST_")
    }
    if path is not None:
        env["PATH"] = path
    return env


def make(directory: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run make in a directory; return the finished process with its output."""
    return subprocess.run(
        [shutil.which("make") or "make", *args],
        cwd=directory,
        env=make_env(path),
        capture_output=True,
        text=True,
        timeout=MAKE_TIMEOUT_SECONDS,
        check=False,
    )


def venv_python(project: Path) -> Path:
    """Return the project's .venv interpreter."""
    return project / ".venv" / "bin" / "python"


def made_by_uv(venv: Path) -> bool:
    """Say whether uv created the venv: uv records its version in pyvenv.cfg, `python -m venv` does not."""
    config = (venv / "pyvenv.cfg").read_text(encoding="utf-8")
    return re.search(r"^uv\s*=", config, flags=re.MULTILINE) is not None


def installed(project: Path) -> set[str]:
    """List the distributions in the project's .venv, as their `.dist-info` folder names."""
    (site_packages,) = (project / ".venv" / "lib").glob("python3*/site-packages")
    return {path.name for path in site_packages.glob("*.dist-info")}


@pytest.fixture(scope="module")
def baked_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bake a project with the defaults once; each test works on its own copy."""
    result = bake_into(tmp_path_factory.mktemp("environments"))
    assert result.succeeded, result.error
    assert result.project_dir is not None
    return result.project_dir


@pytest.fixture
def tiny_project(baked_project: Path, tmp_path: Path) -> Callable[[str], Path]:
    """Copy the baked project into this test's tmp_path, then replace its lock with the given text."""

    def _tiny_project(lock: str) -> Path:
        project = shutil.copytree(baked_project, tmp_path / "project")
        (project / "requirements-dev.lock").write_text(lock, encoding="utf-8")
        return project

    return _tiny_project


@pytest.fixture
def uv() -> Path:
    """Find the uv installed beside the running Python (requirements-test.txt pins the bootstrap's)."""
    uv = Path(sys.executable).with_name("uv")
    if not uv.exists():
        pytest.fail(f"uv is not installed next to {sys.executable}; install requirements-test.lock")
    return uv


@pytest.mark.parametrize("lock", LOCKS, ids=lambda path: path.name)
def test_every_package_a_lock_pins_carries_a_hash(lock: Path) -> None:
    """Hash-checking installs refuse a lock with an unhashed line, and a hash is what makes a pin safe."""
    lines = requirement_lines(lock)
    assert len(lines) > 0
    assert [line for line in lines if "==" not in line] == [], "every line pins one version"
    assert [line for line in lines if "--hash=sha256:" not in line] == []


def test_the_project_lock_holds_every_version_its_requirements_pin() -> None:
    """requirements.txt (every option's pins) and requirements-dev.txt are what `make lock` resolves."""
    wanted = versions(PROJECT_TEMPLATE / "requirements.txt") | versions(
        PROJECT_TEMPLATE / "requirements-dev.txt"
    )
    assert "pytest-xdist" in wanted
    locked = versions(PROJECT_LOCK)
    assert {name: version for name, version in wanted.items() if locked.get(name) != version} == {}


def test_the_template_lock_is_the_project_lock_plus_the_test_tools() -> None:
    """The template's tests run baked projects' suites in its .venv: same versions, same hashes."""
    project = pins(PROJECT_LOCK)
    template = pins(TEST_LOCK)
    # Only markers may differ: tzdata, for one, is Windows-only for the project, not for cookiecutter.
    assert {name: pin for name, pin in project.items() if template.get(name) != pin} == {}
    locked = versions(TEST_LOCK)
    wanted = versions(TEMPLATE_DIR / "requirements-test.txt")
    assert {name: version for name, version in wanted.items() if locked.get(name) != version} == {}


def test_the_tests_uv_is_the_one_the_makefiles_bootstrap() -> None:
    """The refusal tests below use the template environment's uv; it must be the pinned one."""
    assert versions(TEST_LOCK)["uv"] == versions(UV_LOCK)["uv"]


def test_make_uv_empty_builds_the_venv_with_pip(tiny_project: Callable[[str], Path]) -> None:
    """The documented fallback: `python -m venv` and pip in hash-checking mode, and no uv at all."""
    project = tiny_project(SIX_LOCK)
    run = make(project, ".venv/.installed", "UV=")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "using pip" in run.stdout
    assert "--require-hashes" in run.stdout
    imported = subprocess.run(
        [venv_python(project), "-c", "import six; print(six.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip() == "1.17.0"
    assert not made_by_uv(project / ".venv")
    assert not (project / ".venv-uv").exists(), "UV= must not bootstrap uv"


def test_with_no_uv_on_path_make_bootstraps_it_and_syncs_the_venv_with_it(
    tiny_project: Callable[[str], Path],
) -> None:
    """The first run: pip installs the pinned uv into .venv-uv, then uv builds .venv from the lock."""
    project = tiny_project(SIX_LOCK)
    # Every PATH folder without a uv in it, so that the machine's own uv cannot count.
    folders = [
        folder
        for folder in os.environ["PATH"].split(os.pathsep)
        if folder and not os.access(Path(folder) / "uv", os.X_OK)
    ]
    if shutil.which("rm", path=os.pathsep.join(folders)) is None:
        pytest.skip("this machine's uv shares a folder with rm, so PATH cannot leave uv out")
    run = make(project, ".venv/.installed", path=os.pathsep.join(folders))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "using uv" in run.stdout
    bootstrapped = project / ".venv-uv" / "bin" / "uv"
    version = subprocess.run([bootstrapped, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.split()[:2] == ["uv", versions(UV_LOCK)["uv"]]
    assert made_by_uv(project / ".venv")
    # Synced to the lock: six and nothing else, not even pip.
    assert installed(project) == {"six-1.17.0.dist-info"}
    subprocess.run([venv_python(project), "-c", "import six"], check=True)


def test_make_takes_the_uv_on_path(tiny_project: Callable[[str], Path], tmp_path: Path) -> None:
    """A uv on PATH is used as it is, with no bootstrap (a dry run: the uv here is a stub)."""
    project = tiny_project(SIX_LOCK)
    stub = tmp_path / "bin" / "uv"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stub.chmod(0o755)
    run = make(
        project, "--dry-run", ".venv/.installed", path=f"{stub.parent}{os.pathsep}{os.environ['PATH']}"
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{stub} pip sync --quiet --require-hashes" in run.stdout
    assert "requirements-uv.lock" not in run.stdout


@pytest.mark.parametrize("lock", [WRONG_HASH_LOCK, UNHASHED_LOCK], ids=["wrong-hash", "no-hash"])
@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_a_package_the_lock_does_not_vouch_for_is_refused(
    installer: str, lock: str, tiny_project: Callable[[str], Path], uv: Path
) -> None:
    """Both installers run in hash-checking mode: a wrong or missing hash stops the install."""
    project = tiny_project(lock)
    run = make(project, ".venv/.installed", f"UV={uv if installer == 'uv' else ''}")
    assert run.returncode != 0, run.stdout + run.stderr
    assert "hash" in run.stderr.lower(), run.stdout + run.stderr
    assert not (project / ".venv" / ".installed").exists()
    assert not any(name.startswith("six-") for name in installed(project))


@pytest.mark.parametrize("uv", ["", "/opt/uv/bin/uv"], ids=["pip", "uv"])
def test_the_template_environment_is_installed_in_hash_checking_mode(uv: str, tmp_path: Path) -> None:
    """The template's own .venv rule (a dry run: the real one takes the whole lock)."""
    venv = tmp_path / "venv"
    run = make(TEMPLATE_DIR, "--dry-run", f"VENV={venv}", f"{venv}/.installed", f"UV={uv}", "PYTHON=python3")
    assert run.returncode == 0, run.stdout + run.stderr
    (install,) = [line for line in run.stdout.splitlines() if "requirements-test.lock" in line]
    assert "--require-hashes" in install
    assert install.startswith(f"{uv} pip sync" if uv else f"{venv}/bin/python -m pip install")
    assert ".venv-uv" not in run.stdout
