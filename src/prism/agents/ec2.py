"""The EC2 agent: an instance Prism creates in the user's AWS account.

`apply` creates, or finds again, three resources, each tagged `prism:project`,
`prism:agent` and `prism:managed-by` and recorded in the state database as soon
as it exists:

- a key pair (unless `key_name` names the user's own), whose private key is
  written with mode 0600 under `$XDG_DATA_HOME/prism/ec2/`;
- a security group that admits SSH from `ssh_cidr` only (`auto`: this machine's
  public address, /32);
- the instance: IMDSv2 required, root volume encrypted, the instance-initiated
  shutdown behaviour set to `idle_action`. It is launched with an idempotency
  token saved before the request, so an apply interrupted after the request
  finds the same instance.

The project then runs on the instance exactly as on an SSH host
(`prism.agents.hostenv`). An idle watchdog runs on the instance itself
(`prism.agents.idle_watchdog`): after `idle_timeout` minutes with no SSH session
and no run, it shuts the machine down, which EC2 turns into a stop or a
termination. A run on a stopped instance starts it first.
"""

from __future__ import annotations

import logging
import shlex
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prism.agents.aws import Aws, project_id, tag_filters, wait_for
from prism.agents.awsnet import SshAccess, key_folder
from prism.agents.base import Agent
from prism.agents.deps import prism_source_hash
from prism.agents.hostenv import HostEnvironment
from prism.agents.openssh import SshConnection
from prism.errors import ConfigError

if TYPE_CHECKING:
    from prism.agents.remote import RemoteRun
    from prism.engine.events import EventSink, RunFinished

__all__ = ["Ec2Agent"]

logger = logging.getLogger(__name__)

_LIVE_STATES = ("pending", "running", "stopping", "stopped")
_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{}"
# Amazon Linux 2023's own python3 is 3.9; its python3.11 package is recent enough.
_DEFAULT_AMI_PYTHON = "python3.11"


@dataclass(frozen=True)
class Instance:
    """The fields of a described instance that Prism uses."""

    id: str
    state: str
    instance_type: str
    address: str | None
    launched: str

    @classmethod
    def from_description(cls, data: dict[str, Any]) -> Instance:
        return cls(
            id=data["InstanceId"],
            state=data["State"]["Name"],
            instance_type=data["InstanceType"],
            address=data.get("PublicIpAddress") or data.get("PrivateIpAddress"),
            launched=str(data.get("LaunchTime", "")),
        )


class Ec2Agent(Agent):
    """Runs the project on an EC2 instance that Prism creates and removes."""

    type = "ec2"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._aws: Aws | None = None
        self._access: SshAccess | None = None
        self._connection: SshConnection | None = None
        self._environment: HostEnvironment | None = None

    @property
    def aws(self) -> Aws:
        if self._aws is None:
            self._aws = Aws(self.config.spec.region, self.config.path)
        return self._aws

    @property
    def project(self) -> str:
        return project_id(self.project_root)

    @property
    def access(self) -> SshAccess:
        """The key pair and security group; the key folder also contains host keys."""
        if self._access is None:
            self._access = SshAccess(self, self.aws, key_folder(self, "ec2"))
        return self._access

    @property
    def key_folder(self) -> Path:
        return self.access.key_folder

    @property
    def python(self) -> str:
        spec = self.config.spec
        return spec.python or (_DEFAULT_AMI_PYTHON if spec.ami is None else "python3")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
            self._environment = None

    def _fingerprint_parts(self) -> tuple[str, ...]:
        return (prism_source_hash(),)

    def _environment_fingerprint(self) -> str:
        # Only what shapes the virtual environment; other settings such as
        # idle_timeout change without reinstalling anything.
        return self.config.fingerprint_of_requirements(self.python, prism_source_hash())

    # Lifecycle hooks -------------------------------------------------------

    def _is_current(self, fingerprint: str | None) -> bool:
        if fingerprint is None:
            return False
        instance = self._find_instance()
        if instance is None or instance.state != "running":
            return False
        return self._environment_on(instance).is_current(
            self._environment_fingerprint()
        )

    def _prepare_run(self) -> None:
        instance = self._find_instance()
        if instance is None or instance.state == "running":
            return
        logger.info("Starting instance %s (%s)", instance.id, instance.state)
        instance = self._start_instance(instance)
        self._wait_for_ssh(instance)
        self._install_watchdog(restart=False)

    def _apply(self, fingerprint: str) -> str:
        self._check_identity_file()
        key = self.access.ensure_key_pair(
            self.config.spec.key_name, in_use=lambda: self._find_instance() is not None
        )
        group = self.access.ensure_security_group(self.config.spec.subnet_id)
        instance = self._ensure_instance(key, group)
        self._wait_for_ssh(instance)
        self._wait_for_first_boot()
        self._install_watchdog(restart=True)
        environment = self._environment_on(instance)
        target_fingerprint = self._environment_fingerprint()
        if not environment.is_current(target_fingerprint):
            environment.install(target_fingerprint)
        idle = self.config.spec.idle_timeout or 0
        idle_text = (
            f"{self.config.spec.idle_action} after {idle:g} min idle"
            if idle
            else "no idle timeout"
        )
        return (
            f"Agent {self.name}: instance {instance.id} ({instance.instance_type}) "
            f"ready at {instance.address}; {idle_text}"
        )

    def _start(
        self, request: RemoteRun, payload: bytes, early: Any = None
    ) -> Callable[[EventSink], RunFinished]:
        instance = self._find_instance()
        if instance is None:
            raise ConfigError(f"Agent {self.name} has no instance")
        return self._environment_on(instance).start(request, payload)

    def _delete(self) -> list[str]:
        removed: list[str] = []
        instances = self._describe_instances((*_LIVE_STATES, "shutting-down"))
        if instances:
            ids = [instance.id for instance in instances]
            self.aws.call("ec2", "terminate_instances", InstanceIds=ids)
            self._wait_for_state(ids, "terminated")
            removed += [f"terminated instance {id_}" for id_ in ids]
        removed += self.access.delete()
        for resource in self.state.resources(self.name):
            self.state.remove_resource(self.name, resource.kind, resource.id)
        return removed

    def _status(self) -> list[tuple[str, str]]:
        spec = self.config.spec
        instance = self._find_instance()
        if instance is None:
            return [("instance", "(none)"), ("region", self.aws.region)]
        fields = [
            ("instance", instance.id),
            ("state", instance.state),
            ("instance type", instance.instance_type),
            ("address", instance.address or "(none)"),
            ("region", self.aws.region),
            ("launched", instance.launched),
            (
                "idle timeout",
                f"{spec.idle_timeout:g} min, then {spec.idle_action}"
                if spec.idle_timeout
                else "off",
            ),
        ]
        groups = self.access.find_security_groups()
        if groups:
            fields.append(("security group", ", ".join(groups)))
        if instance.state == "running":
            try:
                fields += self._environment_on(instance).status()
            except ConfigError as error:
                fields.append(("host", f"unreachable: {error.message}"))
        return fields

    def _check_identity_file(self) -> None:
        identity = self.config.spec.identity_file
        if identity and not Path(identity).expanduser().is_file():
            raise ConfigError(
                f"{self.config.path}: agent.identity_file: {identity} does not exist",
                hint="Give the private key of the key pair named by agent.key_name.",
            )

    # Instance --------------------------------------------------------------

    def _describe_instances(self, states: tuple[str, ...]) -> list[Instance]:
        response = self.aws.call(
            "ec2",
            "describe_instances",
            Filters=[
                *tag_filters(self.project, self.name),
                {"Name": "instance-state-name", "Values": list(states)},
            ],
        )
        found = [
            Instance.from_description(data)
            for reservation in response["Reservations"]
            for data in reservation["Instances"]
        ]
        return sorted(found, key=lambda instance: instance.launched)

    def _find_instance(self) -> Instance | None:
        instances = self._describe_instances(_LIVE_STATES)
        if len(instances) > 1:
            ids = ", ".join(instance.id for instance in instances)
            raise ConfigError(
                f"Agent {self.name} has several instances ({ids})",
                hint=f"Delete the agent with `prism agent delete -f "
                f"{self.config.path}`, then apply it again.",
            )
        return instances[0] if instances else None

    def _ensure_instance(self, key: str, group: str) -> Instance:
        instance = self._find_instance()
        if instance is None:
            return self._launch(key, group)
        expected_type = self.config.spec.instance_type
        if instance.instance_type != expected_type:
            instance = self._resize(instance, expected_type or "")
        self.aws.call(
            "ec2",
            "modify_instance_attribute",
            InstanceId=instance.id,
            InstanceInitiatedShutdownBehavior={"Value": self._shutdown_behaviour()},
        )
        if instance.state != "running":
            instance = self._start_instance(instance)
        return instance

    def _launch(self, key: str, group: str) -> Instance:
        spec = self.config.spec
        # The token makes the request idempotent: an apply interrupted after
        # sending it gets the same instance back instead of a second one.
        tokens = [r.id for r in self.state.resources(self.name) if r.kind == "launch"]
        token = tokens[0] if tokens else uuid.uuid4().hex
        if not tokens:
            self.state.add_resource(self.name, "launch", token, {})
        ami = spec.ami or self._latest_amazon_linux()
        arguments = self._launch_arguments(ami, key, group, token)

        with self.step(f"Launching a {spec.instance_type} instance from {ami}"):
            response = self.aws.call("ec2", "run_instances", **arguments)
        instance_id = response["Instances"][0]["InstanceId"]
        self.state.add_resource(self.name, "instance", instance_id, {"ami": ami})
        self.state.remove_resource(self.name, "launch", token)
        return self._wait_until_running(instance_id)

    def _launch_arguments(
        self, ami: str, key: str, group: str, token: str
    ) -> dict[str, Any]:
        spec = self.config.spec
        arguments: dict[str, Any] = {
            "ImageId": ami,
            "InstanceType": spec.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "ClientToken": token,
            "KeyName": key,
            "SecurityGroupIds": [group],
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
            "BlockDeviceMappings": [
                {
                    "DeviceName": self._root_device(ami),
                    "Ebs": {
                        "VolumeSize": spec.volume_gb or 30,
                        "VolumeType": "gp3",
                        "Encrypted": True,
                        "DeleteOnTermination": True,
                    },
                }
            ],
            "InstanceInitiatedShutdownBehavior": self._shutdown_behaviour(),
            "UserData": self._user_data(),
            "TagSpecifications": [
                self._tag_specification("instance"),
                self._tag_specification("volume"),
            ],
        }
        if spec.subnet_id:
            arguments["SubnetId"] = spec.subnet_id
        if spec.iam_instance_profile:
            arguments["IamInstanceProfile"] = {"Name": spec.iam_instance_profile}
        if spec.spot:
            stop = spec.idle_action == "stop"
            arguments["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {
                    "SpotInstanceType": "persistent" if stop else "one-time",
                    "InstanceInterruptionBehavior": "stop" if stop else "terminate",
                },
            }
        return arguments

    def _shutdown_behaviour(self) -> str:
        return self.config.spec.idle_action or "stop"

    def _latest_amazon_linux(self) -> str:
        response = self.aws.call(
            "ec2",
            "describe_instance_types",
            InstanceTypes=[self.config.spec.instance_type],
        )
        types = response["InstanceTypes"]
        if not types:
            raise ConfigError(
                f"{self.config.path}: agent.instance_type: "
                f"{self.config.spec.instance_type!r} is not offered in "
                f"{self.aws.region}"
            )
        architectures = types[0]["ProcessorInfo"]["SupportedArchitectures"]
        architecture = "arm64" if "arm64" in architectures else "x86_64"
        response = self.aws.call(
            "ssm", "get_parameter", Name=_AMI_PARAMETER.format(architecture)
        )
        return str(response["Parameter"]["Value"])

    def _root_device(self, ami: str) -> str:
        response = self.aws.call("ec2", "describe_images", ImageIds=[ami])
        if not response["Images"]:
            raise ConfigError(
                f"{self.config.path}: agent.ami: no image {ami!r} in {self.aws.region}"
            )
        return str(response["Images"][0].get("RootDeviceName") or "/dev/xvda")

    def _user_data(self) -> str:
        # Restarts the idle watchdog whenever the instance boots again (after an
        # idle stop, say); on the first boot it installs the interpreter.
        user = shlex.quote(self.config.spec.ssh_user or "ec2-user")
        restart = (
            "rm -f .prism/idle-watchdog.pid; "
            "test -x .prism/idle-watchdog.start && .prism/idle-watchdog.start"
        )
        boot = f"runuser -l {user} -c {shlex.quote(restart)} || true"
        lines = ["#cloud-config", "bootcmd:", f"  - [sh, -c, {_yaml_quote(boot)}]"]
        if self.config.spec.ami is None:
            lines += ["packages:", f"  - {_DEFAULT_AMI_PYTHON}", "  - rsync"]
        return "\n".join(lines) + "\n"

    def _resize(self, instance: Instance, instance_type: str) -> Instance:
        with self.step(
            f"Changing {instance.id} from {instance.instance_type} to {instance_type}"
        ):
            if instance.state != "stopped":
                self.aws.call("ec2", "stop_instances", InstanceIds=[instance.id])
                self._wait_for_state([instance.id], "stopped")
            self.aws.call(
                "ec2",
                "modify_instance_attribute",
                InstanceId=instance.id,
                InstanceType={"Value": instance_type},
            )
        return self._describe(instance.id)

    def _start_instance(self, instance: Instance) -> Instance:
        if instance.state == "stopping":
            self._wait_for_state([instance.id], "stopped")
        if instance.state != "running":
            self.aws.call("ec2", "start_instances", InstanceIds=[instance.id])
        return self._wait_until_running(instance.id)

    def _describe(self, instance_id: str) -> Instance:
        response = self.aws.call("ec2", "describe_instances", InstanceIds=[instance_id])
        return Instance.from_description(response["Reservations"][0]["Instances"][0])

    def _wait_until_running(self, instance_id: str) -> Instance:
        self._wait_for_state([instance_id], "running")
        return self._describe(instance_id)

    def _wait_for_state(self, ids: list[str], expected: str) -> None:
        def check() -> str | None:
            response = self.aws.call("ec2", "describe_instances", InstanceIds=ids)
            states = {
                data["InstanceId"]: data["State"]["Name"]
                for reservation in response["Reservations"]
                for data in reservation["Instances"]
            }
            for id_, state in states.items():
                if expected == "running" and state in ("shutting-down", "terminated"):
                    raise ConfigError(
                        f"Instance {id_} ended while starting (state {state})",
                        hint="Spot capacity may have been reclaimed; see the "
                        "instance's state reason in the EC2 console, then apply "
                        "again.",
                    )
            return expected if set(states.values()) == {expected} else None

        description = f"{', '.join(ids)} to be {expected}"
        with self.step(f"Waiting for {description}"):
            wait_for(description, check, timeout=600)

    # SSH -------------------------------------------------------------------

    def _environment_on(self, instance: Instance) -> HostEnvironment:
        if self._environment is None or self._environment.host != instance.address:
            if instance.address is None:
                raise ConfigError(f"Instance {instance.id} has no IP address yet")
            self.close()
            spec = self.config.spec
            self._environment = self.access.open_environment(
                instance.address,
                instance.id,
                user=spec.ssh_user or "ec2-user",
                identity_file=spec.identity_file,
                generated_key=not spec.key_name,
                proxy=spec.ssh_proxy,
                python=self.python,
            )
            self._connection = self._environment.connection
        return self._environment

    def _wait_for_ssh(self, instance: Instance) -> None:
        self._environment_on(instance).wait_for_login(instance.id)

    def _wait_for_first_boot(self) -> None:
        assert self._connection is not None
        self._connection.run(
            "if command -v cloud-init >/dev/null; then "
            "cloud-init status --wait >/dev/null; fi; true",
            action="wait for the first boot to finish",
        )

    def _install_watchdog(self, *, restart: bool) -> None:
        assert self._connection is not None
        spec = self.config.spec
        if not spec.idle_timeout:
            self._connection.run(
                "test -f .prism/idle-watchdog.pid && "
                'kill "$(cat .prism/idle-watchdog.pid)" 2>/dev/null; '
                "rm -f .prism/idle-watchdog.pid .prism/idle-watchdog.start; true",
                check=False,
            )
            return
        script = (resources.files("prism.agents") / "idle_watchdog.py").read_bytes()
        self._connection.run(
            "mkdir -p .prism && cat > .prism/idle-watchdog.py",
            input=script,
            action="install the idle watchdog",
        )
        self._connection.run(
            "cat > .prism/idle-watchdog.start && chmod +x .prism/idle-watchdog.start "
            f"&& .prism/idle-watchdog.start {'--restart' if restart else ''}",
            input=self._watchdog_starter().encode(),
            action="start the idle watchdog",
        )

    def _watchdog_starter(self) -> str:
        spec = self.config.spec
        seconds = int((spec.idle_timeout or 0) * 60)
        action = (
            'if [ "$(id -u)" = 0 ]; then shutdown -h now; '
            "else sudo -n shutdown -h now; fi"
        )
        watchdog = shlex.join(
            [
                self.python,
                "idle-watchdog.py",
                "--timeout",
                str(seconds),
                "--action",
                action,
            ]
        )
        return (
            "#!/bin/sh\n"
            f"# Written by Prism: {spec.idle_action} this instance after "
            f"{spec.idle_timeout:g} idle minutes.\n"
            'cd "$(dirname "$0")" || exit 1\n'
            'if [ -f idle-watchdog.pid ] && kill -0 "$(cat idle-watchdog.pid)" '
            "2>/dev/null; then\n"
            '  [ "$1" = --restart ] || exit 0\n'
            '  kill "$(cat idle-watchdog.pid)"\n'
            "fi\n"
            f"setsid nohup {watchdog} >> idle-watchdog.log 2>&1 < /dev/null &\n"
            "echo $! > idle-watchdog.pid\n"
        )

    def _tag_specification(self, resource_type: str) -> dict[str, Any]:
        return self.access.tag_specification(resource_type)


def _yaml_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
