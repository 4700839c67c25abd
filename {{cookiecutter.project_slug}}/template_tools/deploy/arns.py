# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""How an IAM statement names a resource: CloudFormation references, or an account's literal ARNs.

The chosen source and destination write their statements against ArnSource; deploy/iam_policy.py
provides both forms.
"""

from __future__ import annotations

from typing import Any, Protocol

Resource = str | dict[str, Any]


class ArnSource(Protocol):
    """How a policy refers to each resource it names."""

    def arn(self, logical_id: str, service: str, resource: str, attribute: str = "Arn") -> Resource:
        """The ARN of the stack's resource logical_id, which is `service`'s `resource` (queue
        name, stream/NAME, table/NAME, topic name); attribute is the GetAtt that returns it."""
        ...

    def endpoint(self, name: str) -> Resource: ...

    def log_group(self, function_name: str) -> list[Resource]: ...

    @property
    def creates_log_group(self) -> bool: ...
