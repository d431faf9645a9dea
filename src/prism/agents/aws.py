"""AWS access shared by the agents that create cloud resources (EC2, EMR).

boto3 finds credentials, region and endpoint as the AWS CLI does (environment,
`~/.aws/`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`). Every call goes through `Aws.call`,
which turns botocore's errors into one `ConfigError` that tells the user what to do.

Every resource Prism creates carries the tags `prism:project`, `prism:agent` and
`prism:managed-by`, so `status` and `delete` find it without local state.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prism.errors import ConfigError

__all__ = [
    "MANAGED_BY",
    "Aws",
    "agent_tags",
    "project_id",
    "tag_filters",
    "wait_for",
]

logger = logging.getLogger(__name__)

MANAGED_BY = "prism"
_PROJECT_TAG = "prism:project"
_AGENT_TAG = "prism:agent"
_MANAGED_TAG = "prism:managed-by"

_CREDENTIAL_CODES = frozenset(
    {
        "AuthFailure",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidAccessKeyId",
    }
)
_PERMISSION_CODES = frozenset(
    {"UnauthorizedOperation", "AccessDenied", "AccessDeniedException"}
)
# Error codes of a describe or get call whose resource does not exist.
_MISSING_CODES = frozenset(
    {"404", "NoSuchKey", "NotFound", "NoSuchBucket", "NoSuchEntity"}
)
_CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "SpotMaxPriceTooLow",
        "InsufficientFreeAddressesInSubnet",
    }
)


def project_id(project_root: Path) -> str:
    """Name the project in tags: its folder name and a hash of its path."""
    digest = hashlib.sha256(str(project_root).encode()).hexdigest()[:8]
    return f"{project_root.name}-{digest}"


def agent_tags(project: str, agent: str, name: str) -> list[dict[str, str]]:
    """Return the tags of a resource Prism creates for `agent`."""
    return [
        {"Key": "Name", "Value": name},
        {"Key": _PROJECT_TAG, "Value": project},
        {"Key": _AGENT_TAG, "Value": agent},
        {"Key": _MANAGED_TAG, "Value": MANAGED_BY},
    ]


def tag_filters(project: str, agent: str) -> list[dict[str, Any]]:
    """Return describe-call filters that match the resources of `agent`."""
    return [
        {"Name": f"tag:{_PROJECT_TAG}", "Values": [project]},
        {"Name": f"tag:{_AGENT_TAG}", "Values": [agent]},
        {"Name": f"tag:{_MANAGED_TAG}", "Values": [MANAGED_BY]},
    ]


class Aws:
    """Clients for one region, created on first use, and error translation."""

    def __init__(self, region: str | None, config_path: Path) -> None:
        try:
            import boto3
        except ImportError:
            raise ConfigError(
                f"{config_path}: this agent type needs boto3, which is not installed",
                hint="Install it with `pip install 'prism-pipelines[aws]'`.",
            ) from None
        self._session = boto3.session.Session(region_name=region)
        if not self._session.region_name:
            raise ConfigError(
                f"{config_path}: agent.region is not set and no AWS region is "
                "configured",
                hint="Set agent.region, or AWS_REGION, or a region in ~/.aws/config.",
            )
        self.region: str = self._session.region_name
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        """Return the boto3 client for `service`, created once."""
        if service not in self._clients:
            from botocore.config import Config

            config = Config(
                connect_timeout=10,
                read_timeout=60,
                retries={"max_attempts": 5, "mode": "standard"},
            )
            self._clients[service] = self._session.client(service, config=config)
        return self._clients[service]

    def call(self, service: str, operation: str, **arguments: Any) -> Any:
        """Call `operation` (a boto3 method name) and translate its errors."""
        method = getattr(self.client(service), operation)
        try:
            return method(**arguments)
        except Exception as error:
            raise describe_error(service, operation, error, self.region) from None

    def call_or_none(self, service: str, operation: str, **arguments: Any) -> Any:
        """Call `operation`; return None when AWS reports the resource missing."""
        from botocore.exceptions import ClientError

        method = getattr(self.client(service), operation)
        try:
            return method(**arguments)
        except ClientError as error:
            if self.error_code(error) in _MISSING_CODES:
                return None
            raise describe_error(service, operation, error, self.region) from None
        except Exception as error:
            raise describe_error(service, operation, error, self.region) from None

    def error_code(self, error: BaseException) -> str:
        """Return the AWS error code of a failed call, or ''."""
        response = getattr(error, "response", None) or {}
        return str(response.get("Error", {}).get("Code", ""))


def describe_error(
    service: str, operation: str, error: Exception, region: str
) -> Exception:
    """Return the `ConfigError` for a failed AWS call, or `error` if not AWS's."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
    )

    action = f"{service}:{_action_name(operation)}"
    if isinstance(error, NoCredentialsError):
        return ConfigError(
            "No AWS credentials found",
            hint="Configure them with `aws configure`, AWS_PROFILE, or "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.",
        )
    if isinstance(error, EndpointConnectionError):
        return ConfigError(
            f"Cannot reach AWS for {action} in {region}: {error}",
            hint="Check the network connection, agent.region and AWS_ENDPOINT_URL.",
        )
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        message = str(error.response.get("Error", {}).get("Message", "")).strip()
        return _client_error(action, code, message, region)
    if isinstance(error, BotoCoreError) or type(error).__module__.startswith(
        "botocore."
    ):
        # The first line only: a parser error carries the whole response body.
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return ConfigError(
            f"AWS call {action} in {region} failed: {detail[:300]}",
            hint="Check agent.region and AWS_ENDPOINT_URL.",
        )
    return error


def _client_error(action: str, code: str, message: str, region: str) -> ConfigError:
    detail = f"{code}: {message}" if message else code
    if code in _CREDENTIAL_CODES:
        return ConfigError(
            f"AWS rejected the credentials ({detail})",
            hint="Check AWS_PROFILE or the keys in ~/.aws/credentials; temporary "
            "credentials may have expired.",
        )
    if code in _PERMISSION_CODES:
        return ConfigError(
            f"Not allowed to call {action} ({detail})",
            hint=f"Ask an administrator to grant {action} to these credentials.",
        )
    if code in _CAPACITY_CODES:
        return ConfigError(
            f"AWS has no capacity for this request in {region} ({detail})",
            hint="Try another agent.instance_type, another agent.subnet_id (another "
            "availability zone), or try again later.",
        )
    if code.endswith("LimitExceeded") or code == "MaxSpotInstanceCountExceeded":
        return ConfigError(
            f"An AWS quota stops {action} in {region} ({detail})",
            hint="Request a higher quota in the Service Quotas console, or use a "
            "smaller instance type.",
        )
    return ConfigError(f"AWS refused {action} in {region} ({detail})")


def _action_name(operation: str) -> str:
    return "".join(part.capitalize() for part in operation.split("_"))


def wait_for(
    description: str,
    check: Callable[[], str | None],
    *,
    timeout: float,
    interval: float = 5.0,
    progress: Callable[[], str] | None = None,
) -> str:
    """Poll `check` until it returns a value; log progress while waiting.

    `check` returns None to keep waiting, or the final value. `progress`, if
    given, describes what is being waited for (a state, say) in the progress
    lines. Raises ConfigError after `timeout` seconds.
    """
    started = time.monotonic()
    last_logged = started
    while True:
        result = check()
        if result is not None:
            return result
        elapsed = time.monotonic() - started
        if elapsed >= timeout:
            raise ConfigError(
                f"Gave up waiting for {description} after {elapsed:.0f}s",
                hint="Run the same command again to resume.",
            )
        if time.monotonic() - last_logged >= 15:
            detail = f"{progress()}, " if progress is not None else ""
            logger.info("Still waiting for %s (%s%.0fs)", description, detail, elapsed)
            last_logged = time.monotonic()
        time.sleep(interval)
