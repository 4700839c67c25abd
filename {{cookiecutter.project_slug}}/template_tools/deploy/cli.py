# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Runs a deploy command's main(): known failures become one clear message and a non-zero exit."""

from __future__ import annotations

import sys
from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from .settings import DeploySettingsError


class DeployError(RuntimeError):
    """A deploy step failed in a way the message explains, including how to fix it."""


def run(main: Callable[[], int]) -> int:
    """Call main; print known errors without a traceback."""
    try:
        return main()
    except NoCredentialsError:
        print(
            "error: no AWS credentials found; set AWS_PROFILE or run `aws configure` / `aws sso login`", file=sys.stderr
        )
    except NoRegionError:
        print("error: no AWS region; set AWS_DEFAULT_REGION or region in deploy/config.json", file=sys.stderr)
    except (DeploySettingsError, DeployError, TimeoutError) as error:
        print(f"error: {error}", file=sys.stderr)
    except ClientError as error:
        print(f"error: AWS refused {error.operation_name}: {error}", file=sys.stderr)
    except BotoCoreError as error:
        print(f"error: {error}", file=sys.stderr)
    return 1
