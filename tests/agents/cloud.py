"""A stand-in AWS account: moto's server, plus an sshd container as its hosts.

The hosts Prism launches in moto (an EC2 instance, an EMR master) are reached
through `ssh_proxy`, a ProxyCommand that tunnels through the sshd container to
its own port 22, as users reach a private host through a bastion.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.agents.conftest import SECRET_ENV
from tests.agents.moto import boto_client, running_moto
from tests.agents.sshd import SSHD_IMAGE, SshHost, running_sshd
from tests.conftest import prism_env

KEY_NAME = "prism-test-key"
TEST_CIDR = "203.0.113.7/32"


@dataclass(frozen=True)
class Cloud:
    """moto's endpoint, the sshd host behind it, and a folder for key files.

    `recording` is moto's log of the requests it received, if it keeps one.
    """

    endpoint: str
    host: SshHost
    data_home: Path
    recording: Path | None = None

    def client(self, service: str) -> Any:
        return boto_client(service, self.endpoint)


@contextmanager
def running_cloud(
    folder: Path, *, image: str = SSHD_IMAGE, record: bool = False
) -> Iterator[Cloud]:
    """Start moto and an sshd container, and point AWS clients at moto.

    The key pair `KEY_NAME` contains the container's authorized key, and
    `XDG_DATA_HOME` is a folder of `folder`, so generated keys stay there.
    """
    recording = folder / "requests.jsonl" if record else None
    with (
        running_sshd(folder, image) as host,
        running_moto(folder / "moto.log", recording) as endpoint,
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setenv("AWS_ENDPOINT_URL", endpoint)
        patch.setenv("XDG_DATA_HOME", str(folder / "data"))
        patch.setenv(*next(iter(SECRET_ENV.items())))
        cloud = Cloud(endpoint, host, folder / "data", recording)
        cloud.client("ec2").import_key_pair(
            KeyName=KEY_NAME,
            PublicKeyMaterial=host.key.with_suffix(".pub").read_bytes(),
        )
        yield cloud


def tag_value(resource: dict[str, Any], key: str) -> str:
    """Return the value of the tag `key` of a described resource, or ''."""
    return next(
        (tag["Value"] for tag in resource.get("Tags", []) if tag["Key"] == key), ""
    )


def ssh_ranges(
    cloud: Cloud, group_id: str
) -> tuple[dict[str, Any], list[tuple[int, str]]]:
    """Return a described security group and its ingress as (port, CIDR) pairs."""
    ec2 = cloud.client("ec2")
    [group] = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    ranges = [
        (permission["FromPort"], address["CidrIp"])
        for permission in group["IpPermissions"]
        for address in permission.get("IpRanges", [])
    ]
    return group, ranges


def security_group_exists(cloud: Cloud, group_id: str) -> bool:
    groups = cloud.client("ec2").describe_security_groups(
        Filters=[{"Name": "group-id", "Values": [group_id]}]
    )["SecurityGroups"]
    return bool(groups)


def start_apply(
    root: Path, agent_file: Path, *, new_session: bool = False
) -> subprocess.Popen[str]:
    """Start `prism agent apply` in `root` without waiting, output in one pipe.

    With `new_session`, the process leads its own group, so a test can send
    SIGINT to it and its children as a terminal would.
    """
    return subprocess.Popen(
        [sys.executable, "-m", "prism", "agent", "apply", "-f", str(agent_file)],
        cwd=root,
        env=prism_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=new_session,
    )
