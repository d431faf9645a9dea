"""The SSH access of agents whose hosts Prism creates in AWS (EC2, EMR).

An `SshAccess` owns two tagged resources of one agent: a key pair, unless the
agent file names the user's own with `key_name`, and a security group that
admits SSH from `ssh_cidr` only. The private key of a generated key pair is
written with mode 0600 to the agent's key folder. Both are recorded in the
state database as soon as they exist, and found again by name or tags when it
is gone.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prism.agents.aws import Aws, agent_tags, project_id, tag_filters, wait_for
from prism.agents.hostenv import HostEnvironment
from prism.agents.openssh import SshConnection, SshEndpoint
from prism.errors import ConfigError

if TYPE_CHECKING:
    from prism.agents.base import Agent

__all__ = ["SshAccess", "key_folder", "write_private_key"]

logger = logging.getLogger(__name__)

_CHECKIP_URL = "https://checkip.amazonaws.com"


def key_folder(agent: Agent, kind: str) -> Path:
    """Return where an agent of type `kind` keeps its private key and host keys."""
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local/share")
    project = project_id(agent.project_root)
    return Path(data) / "prism" / kind / f"{project}-{agent.name}"


class SshAccess:
    """The key pair and the SSH security group of one agent."""

    def __init__(self, agent: Agent, aws: Aws, folder: Path) -> None:
        self.agent = agent
        self.aws = aws
        self.key_folder = folder
        self.project = project_id(agent.project_root)
        self.resource_name = f"prism-{self.project}-{agent.name}"

    @property
    def key_file(self) -> Path:
        return self.key_folder / "key.pem"

    def open_environment(
        self,
        host: str,
        host_id: str,
        *,
        user: str,
        identity_file: str | None,
        generated_key: bool,
        proxy: str | None,
        python: str,
    ) -> HostEnvironment:
        """Connect over SSH to a host that this access admits, and return its
        environment.

        With `generated_key`, the identity is the generated key pair's `key_file`
        in place of `identity_file`.
        Each `host_id` gets its own known_hosts file, because a new host at a
        reused address has a new host key, which must not look like an attack.
        """
        self.key_folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        endpoint = SshEndpoint(
            host=host,
            user=user,
            identity_file=str(self.key_file) if generated_key else identity_file,
            proxy=proxy,
            known_hosts=str(self.key_folder / f"known_hosts-{host_id}"),
        )
        return HostEnvironment(
            self.agent, SshConnection(endpoint), host=host, workdir=None, python=python
        )

    def tag_specification(self, resource_type: str) -> dict[str, Any]:
        """Return the `TagSpecifications` item that tags a new resource."""
        return {
            "ResourceType": resource_type,
            "Tags": agent_tags(self.project, self.agent.name, self.resource_name),
        }

    def ensure_key_pair(self, key_name: str | None, in_use: Callable[[], bool]) -> str:
        """Return the key pair's name, creating one unless `key_name` is given.

        `in_use` returns True when a host that needs the existing key pair runs;
        then a lost private key is an error instead of a reason to replace it.
        """
        if key_name:
            self._check_key_pair(key_name)
            return key_name
        if self.find_key_pairs():
            if self.key_file.is_file():
                return self.resource_name
            if in_use():
                raise ConfigError(
                    f"Agent {self.agent.name}: the private key of key pair "
                    f"{self.resource_name} is missing ({self.key_file})",
                    hint=f"Delete the agent with `prism agent delete -f "
                    f"{self.agent.config.path}`, then apply it again.",
                )
            self.aws.call("ec2", "delete_key_pair", KeyName=self.resource_name)
        with self.agent.step(f"Creating key pair {self.resource_name}"):
            response = self.aws.call(
                "ec2",
                "create_key_pair",
                KeyName=self.resource_name,
                KeyType="ed25519",
                TagSpecifications=[self.tag_specification("key-pair")],
            )
            self.agent.state.add_resource(
                self.agent.name,
                "key-pair",
                self.resource_name,
                {"file": str(self.key_file)},
            )
            write_private_key(self.key_file, response["KeyMaterial"])
        return self.resource_name

    def _check_key_pair(self, key_name: str) -> None:
        response = self.aws.call(
            "ec2",
            "describe_key_pairs",
            Filters=[{"Name": "key-name", "Values": [key_name]}],
        )
        if not response["KeyPairs"]:
            raise ConfigError(
                f"{self.agent.config.path}: agent.key_name: no key pair named "
                f"{key_name!r} in {self.aws.region}",
                hint="Create it in the EC2 console, or leave key_name out and "
                "Prism creates one.",
            )

    def find_key_pairs(self) -> list[str]:
        response = self.aws.call(
            "ec2",
            "describe_key_pairs",
            Filters=[{"Name": "key-name", "Values": [self.resource_name]}],
        )
        return [pair["KeyName"] for pair in response["KeyPairs"]]

    def ensure_security_group(self, subnet_id: str | None) -> str:
        """Return the agent's security group, created if missing, open to SSH."""
        groups = self.find_security_groups()
        if groups:
            group = groups[0]
        else:
            vpc = self.vpc_id(subnet_id)
            with self.agent.step(f"Creating security group {self.resource_name}"):
                response = self.aws.call(
                    "ec2",
                    "create_security_group",
                    GroupName=self.resource_name,
                    Description=f"SSH to Prism agent {self.agent.name}",
                    VpcId=vpc,
                    TagSpecifications=[self.tag_specification("security-group")],
                )
            group = response["GroupId"]
            self.agent.state.add_resource(
                self.agent.name, "security-group", group, {"vpc": vpc}
            )
        self._authorize_ssh(group)
        return group

    def find_security_groups(self) -> list[str]:
        response = self.aws.call(
            "ec2",
            "describe_security_groups",
            Filters=tag_filters(self.project, self.agent.name),
        )
        return [group["GroupId"] for group in response["SecurityGroups"]]

    def vpc_id(self, subnet_id: str | None) -> str:
        """Return the VPC of `subnet_id`, or the region's default VPC."""
        if subnet_id:
            response = self.aws.call("ec2", "describe_subnets", SubnetIds=[subnet_id])
            return str(response["Subnets"][0]["VpcId"])
        response = self.aws.call(
            "ec2",
            "describe_vpcs",
            Filters=[{"Name": "isDefault", "Values": ["true"]}],
        )
        if not response["Vpcs"]:
            raise ConfigError(
                f"{self.agent.config.path}: {self.aws.region} has no default VPC",
                hint="Set agent.subnet_id to a subnet the hosts should use.",
            )
        return str(response["Vpcs"][0]["VpcId"])

    def _authorize_ssh(self, group: str) -> None:
        allowed = set(self._ssh_cidrs())
        response = self.aws.call("ec2", "describe_security_groups", GroupIds=[group])
        current: set[str] = set()
        for permission in response["SecurityGroups"][0].get("IpPermissions", []):
            if permission.get("FromPort") == 22 and permission.get("ToPort") == 22:
                current |= {r["CidrIp"] for r in permission.get("IpRanges", [])}
                current |= {r["CidrIpv6"] for r in permission.get("Ipv6Ranges", [])}
        if current - allowed:
            self.aws.call(
                "ec2",
                "revoke_security_group_ingress",
                GroupId=group,
                IpPermissions=[_ssh_permission(sorted(current - allowed))],
            )
        if allowed - current:
            self.aws.call(
                "ec2",
                "authorize_security_group_ingress",
                GroupId=group,
                IpPermissions=[_ssh_permission(sorted(allowed - current))],
            )
        if allowed != current:
            logger.info(
                "Security group %s admits SSH from %s",
                group,
                ", ".join(sorted(allowed)),
            )

    def _ssh_cidrs(self) -> list[str]:
        import ipaddress

        cidrs = []
        for item in self.agent.config.spec.ssh_cidr:
            if item == "auto":
                address = ipaddress.ip_address(_public_address(self.agent.config.path))
                item = f"{address}/{address.max_prefixlen}"
            network = ipaddress.ip_network(item, strict=False)
            if network.prefixlen == 0:
                logger.warning(
                    "agent.ssh_cidr %s admits SSH from every address on the internet",
                    network,
                )
            cidrs.append(str(network))
        return cidrs

    def delete_security_group(self, group: str) -> None:
        """Delete `group`, waiting while hosts that just ended still use it."""

        def check() -> str | None:
            try:
                self.aws.call("ec2", "delete_security_group", GroupId=group)
            except ConfigError as error:
                if "DependencyViolation" in str(error):
                    return None
                raise
            return "deleted"

        wait_for(f"security group {group} to be free", check, timeout=300)

    def delete(self) -> list[str]:
        """Delete the security groups, the generated key pair and the key folder."""
        removed: list[str] = []
        for group in self.find_security_groups():
            self.delete_security_group(group)
            removed.append(f"deleted security group {group}")
        for key_name in self.find_key_pairs():
            self.aws.call("ec2", "delete_key_pair", KeyName=key_name)
            removed.append(f"deleted key pair {key_name}")
        if self.key_folder.exists():
            shutil.rmtree(self.key_folder)
            removed.append(f"removed {self.key_folder}")
        return removed


def _ssh_permission(cidrs: list[str]) -> dict[str, Any]:
    permission: dict[str, Any] = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22}
    ipv4 = [{"CidrIp": cidr} for cidr in cidrs if ":" not in cidr]
    ipv6 = [{"CidrIpv6": cidr} for cidr in cidrs if ":" in cidr]
    if ipv4:
        permission["IpRanges"] = ipv4
    if ipv6:
        permission["Ipv6Ranges"] = ipv6
    return permission


def write_private_key(path: Path, material: str) -> None:
    """Write a private key that no other user can read, not even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(material if material.endswith("\n") else material + "\n")


def _public_address(config_path: Path) -> str:
    import urllib.request

    try:
        with urllib.request.urlopen(_CHECKIP_URL, timeout=10) as response:
            return str(response.read().decode().strip())
    except OSError as error:
        raise ConfigError(
            f"{config_path}: agent.ssh_cidr is auto, but this machine's public "
            f"address could not be found ({error})",
            hint="Set agent.ssh_cidr to the address range you connect from, such as "
            "203.0.113.7/32.",
        ) from None
