"""AWS error responses become one clear message each, with what to do next.

The responses come from botocore's Stubber, which replies to a real boto3 client
without a network; nothing of Prism's is replaced.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from prism.agents.aws import Aws
from prism.errors import ConfigError

pytest.importorskip("botocore")

CASES = [
    ("InsufficientInstanceCapacity", "no capacity", "another agent.instance_type"),
    ("VcpuLimitExceeded", "An AWS quota stops ec2:RunInstances", "higher quota"),
    ("UnauthorizedOperation", "Not allowed to call ec2:RunInstances", "grant"),
    ("AuthFailure", "rejected the credentials", "AWS_PROFILE"),
    ("InvalidAMIID.Malformed", "AWS refused ec2:RunInstances", None),
]


@pytest.mark.parametrize(("code", "message", "hint"), CASES)
def test_aws_error_codes_become_clear_messages(
    code: str, message: str, hint: str | None
) -> None:
    from botocore.stub import Stubber

    aws = Aws("us-east-1", Path("agent.yml"))
    client = aws.client("ec2")
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "run_instances", service_error_code=code, service_message="details"
        )
        with pytest.raises(ConfigError) as raised:
            aws.call("ec2", "run_instances", ImageId="ami-1", MinCount=1, MaxCount=1)
    assert message in str(raised.value)
    assert f"{code}: details" in str(raised.value)
    if hint is not None:
        assert hint in (raised.value.hint or "")


def test_missing_region_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    with pytest.raises(ConfigError) as raised:
        Aws(None, Path("agent.yml"))
    assert "agent.region is not set" in str(raised.value)
