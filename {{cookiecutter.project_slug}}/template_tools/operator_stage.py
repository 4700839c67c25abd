# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Where the operator commands (send, replay, redrive, tail) act: a stage's resources, in AWS or the emulator.

AWS_ENDPOINT_URL is the one switch: set (`make emulator` prints the line; `LOCAL=1` sets it), the
commands talk to the emulator at that address; unset, to the AWS account of the caller's
credentials, in the region deploy/config.json deploys to.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from .emulator import REGION
from .stage import PROJECT_DIR, UnknownStageError, load_stage

# AWS error codes that mean the stage's resources are not there (not deployed, or an emulator
# that was restarted since `make serve` created them).
_MISSING_RESOURCE_CODES = frozenset(
    {
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "ResourceNotFoundException",
        "NotFound",
    }
)


def deployed_region(project_dir: Path = PROJECT_DIR) -> str:
    """The region `make deploy` puts the stack in."""
    return str(json.loads((project_dir / "deploy" / "config.json").read_text())["region"])


def on_emulator() -> bool:
    """Whether the commands act on an emulator (AWS_ENDPOINT_URL is set: `LOCAL=1`) rather than AWS."""
    return bool(os.environ.get("AWS_ENDPOINT_URL"))


def operator_environment(stage: str, project_dir: Path = PROJECT_DIR) -> dict[str, str]:
    """The stage's environment variables (resource names), with boto3 pointed at the stage's region.

    The region is set for the whole process because the destination's reader makes its own
    clients; with an emulator, a region the shell chose is kept.
    """
    if on_emulator():
        # The region `make serve` created the resources in (see emulator.local_aws_environment).
        os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    else:
        os.environ["AWS_DEFAULT_REGION"] = deployed_region(project_dir)
    return load_stage(stage, project_dir).environment_variables


def where() -> str:
    """Where the commands are acting, for their first line of output."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    return f"emulator at {endpoint}" if endpoint else f"AWS {os.environ.get('AWS_DEFAULT_REGION', '')}"


def run_command(command: Callable[[], int]) -> int:
    """Run an operator command; turn the errors an operator can fix into one line and exit code 2."""
    try:
        return command()
    except KeyboardInterrupt:
        print("\nstopped", file=sys.stderr)
        return 130
    except (UnknownStageError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except NoCredentialsError:
        print(
            "error: no AWS credentials; configure them for the account, or use the emulator: "
            "`make emulator` in another terminal, then add LOCAL=1",
            file=sys.stderr,
        )
        return 2
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        hint = ""
        if code in _MISSING_RESOURCE_CODES:
            hint = " (not deployed to this stage? locally, run `make serve LOCAL=1` first)"
        print(f"error: {error}{hint}", file=sys.stderr)
        return 2
    except EndpointConnectionError as error:
        hint = " (is `make emulator` running?)" if on_emulator() else ""
        print(f"error: {error}{hint}", file=sys.stderr)
        return 2
    except BotoCoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
