"""The pydantic schema of agent files, imported only to validate a changed file."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from prism.agents.settings import AGENT_TYPES, AgentSettings
from prism.errors import ConfigError

__all__ = ["validate_agent"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MEMORY = re.compile(r"^\s*\d+(\.\d+)?\s*[kKmMgG]?[bB]?\s*$")
_S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")
_CLUSTER_ID = re.compile(r"^j-[A-Z0-9]{6,}$")
_RELEASE_LABEL = re.compile(r"^emr-\d+\.\d+\.\d+$")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    requirements: Path | None = Field(
        default=None, description="requirements.txt, relative to the agent file"
    )
    env: dict[str, str | int | float | bool] = Field(default_factory=dict)
    artifacts: list[str] = Field(default_factory=list)
    timeout: float | None = Field(default=None, description="seconds")

    @field_validator("env")
    @classmethod
    def _check_env(
        cls, value: dict[str, str | int | float | bool]
    ) -> dict[str, str | int | float | bool]:
        for name, item in value.items():
            if not _ENV_NAME.match(name):
                raise ValueError(
                    f"{name!r} is not a valid environment variable name (letters, "
                    "digits and underscores, not starting with a digit)"
                )
            if isinstance(item, str) and "\0" in item:
                raise ValueError(f"the value of {name} contains a NUL character")
        return value

    @field_validator("timeout", mode="before")
    @classmethod
    def _parse_timeout(cls, value: Any) -> Any:
        if isinstance(value, str):
            match = _DURATION.match(value)
            if not match:
                raise ValueError("must be seconds or a duration such as 90s, 30m, 2h")
            factor = {"s": 1, "m": 60, "h": 3600}[match.group(2) or "s"]
            return float(match.group(1)) * factor
        return value

    @field_validator("timeout")
    @classmethod
    def _check_timeout(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("must be more than 0 seconds")
        return value


class VenvSpec(_Spec):
    """A virtual environment on this machine, under the project's `.prism/`."""

    type: Literal["venv"]
    python: str | None = Field(
        default=None, description="interpreter that creates the environment"
    )


class Resources(BaseModel):
    """Limits of a Docker agent's container."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpus: float | None = Field(default=None, gt=0)
    memory: str | None = None

    @field_validator("memory", mode="before")
    @classmethod
    def _check_memory(cls, value: Any) -> Any:
        if value is None:
            return value
        text = str(value)
        if not _MEMORY.match(text):
            raise ValueError("must be a size such as 512m or 2g")
        return text.strip()


class DockerSpec(_Spec):
    """A Docker image built from `image`, where each run gets its own container."""

    type: Literal["docker"]
    # The default of Prism 0.2.x, kept so its agent files mean the same thing.
    image: str = "python:3.10.8-slim-bullseye"
    server_url: str | None = None
    resources: Resources = Field(default_factory=Resources)


class SshSpec(_Spec):
    """A host reached with the system's OpenSSH client."""

    type: Literal["ssh"]
    host: str = Field(min_length=1)
    user: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    identity_file: str | None = None
    ssh_config: str | None = Field(
        default=None, description="an OpenSSH config file used instead of ~/.ssh/config"
    )
    python: str = "python3"
    workdir: str | None = None

    @field_validator("workdir")
    @classmethod
    def _check_workdir(cls, value: str | None) -> str | None:
        if value is not None and value.strip().rstrip("/") in ("", "~", "."):
            raise ValueError(
                "must name a folder of its own, such as ~/.prism/nightly; Prism "
                "deletes it with `prism agent delete`"
            )
        return value


class _CloudSpec(_Spec):
    """Settings shared by the agents whose hosts Prism creates in AWS."""

    region: str | None = None
    subnet_id: str | None = None
    key_name: str | None = None
    identity_file: str | None = None
    ssh_cidr: list[str] = Field(default_factory=lambda: ["auto"])
    ssh_proxy: str | None = None
    python: str | None = None
    idle_timeout: float = Field(default=60, description="minutes; 0 turns it off")

    @field_validator("ssh_cidr", mode="before")
    @classmethod
    def _listify_cidr(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("ssh_cidr")
    @classmethod
    def _check_cidr(cls, value: list[str]) -> list[str]:
        import ipaddress

        if not value:
            raise ValueError("must name at least one address range, or auto")
        for item in value:
            if item == "auto":
                continue
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an address range such as 203.0.113.7/32, nor auto"
                ) from None
        return value

    @field_validator("idle_timeout", mode="before")
    @classmethod
    def _parse_idle_timeout(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be minutes, such as 60, or 0 to turn it off")
        if isinstance(value, str):
            match = _DURATION.match(value)
            if not match:
                raise ValueError("must be minutes or a duration such as 90m or 2h")
            factor = {"s": 1 / 60, "m": 1, "h": 60}[match.group(2) or "m"]
            return float(match.group(1)) * factor
        return value

    @field_validator("idle_timeout")
    @classmethod
    def _check_idle_timeout(cls, value: float) -> float:
        # A shorter timeout would stop the instance between two commands.
        if value != 0 and not 1 <= value <= 7 * 24 * 60:
            raise ValueError("must be 0 (off) or from 1 minute to 7 days")
        return value

    @field_validator("key_name", "subnet_id", "region", "ssh_proxy")
    @classmethod
    def _check_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty; leave the key out for the default")
        return value


class Ec2Spec(_CloudSpec):
    """An EC2 instance that Prism creates, reached over SSH."""

    type: Literal["ec2"]
    instance_type: str = Field(min_length=1)
    ami: str | None = Field(
        default=None, description="default: the latest Amazon Linux 2023 image"
    )
    spot: bool = False
    volume_gb: int = Field(default=30, ge=8, le=16384)
    iam_instance_profile: str | None = None
    ssh_user: str = "ec2-user"
    idle_action: Literal["stop", "terminate"] = "stop"

    @field_validator("ami")
    @classmethod
    def _check_ami(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty; leave the key out for the default")
        return value


class InstanceGroup(BaseModel):
    """One instance group of an EMR cluster: its instance type and count."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instance_type: str = Field(min_length=1)
    count: int = Field(default=1, ge=1, le=500)


class InstanceGroups(BaseModel):
    """The master, core and optional task groups of a cluster Prism creates."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    master: InstanceGroup = InstanceGroup(instance_type="m5.xlarge")
    core: InstanceGroup = InstanceGroup(instance_type="m5.xlarge", count=2)
    task: InstanceGroup | None = None

    @field_validator("master")
    @classmethod
    def _check_master(cls, value: InstanceGroup) -> InstanceGroup:
        if value.count not in (1, 3):
            raise ValueError("count must be 1, or 3 for a highly available master")
        return value


class ManagedScaling(BaseModel):
    """EMR managed scaling limits, in instances or vCPUs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: int = Field(ge=1, le=2000)
    max: int = Field(ge=1, le=2000)
    max_on_demand: int | None = Field(default=None, ge=0, le=2000)
    unit: Literal["instances", "vcpu"] = "instances"

    @model_validator(mode="after")
    def _check_limits(self) -> ManagedScaling:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must not be less than min ({self.min})")
        if self.max_on_demand is not None and self.max_on_demand > self.max:
            raise ValueError(
                f"max_on_demand ({self.max_on_demand}) must not be more than max "
                f"({self.max})"
            )
        return self


# Keys that shape a cluster Prism creates; they mean nothing with `cluster_id`.
_CLUSTER_KEYS = (
    "release_label",
    "instance_groups",
    "managed_scaling",
    "idle_timeout",
    "log_uri",
    "subnet_id",
    "key_name",
    "ssh_cidr",
    "service_role",
    "job_flow_role",
    "create_default_roles",
    "bootstrap",
)


class EmrSpec(_CloudSpec):
    """An EMR cluster that Prism creates, or one it attaches to by `cluster_id`."""

    type: Literal["emr"]
    cluster_id: str | None = None
    release_label: str = "emr-7.8.0"
    instance_groups: InstanceGroups = InstanceGroups()
    managed_scaling: ManagedScaling | None = None
    log_uri: str | None = None
    staging_uri: str | None = None
    service_role: str | None = None
    job_flow_role: str | None = None
    create_default_roles: bool = False
    bootstrap: list[str] = Field(default_factory=list)
    ssh_user: str = "hadoop"
    transport: Literal["ssh", "steps"] = "ssh"

    @field_validator("cluster_id")
    @classmethod
    def _check_cluster_id(cls, value: str | None) -> str | None:
        if value is not None and not _CLUSTER_ID.match(value):
            raise ValueError("must be an EMR cluster id such as j-2AXXXXXXGAPLF")
        return value

    @field_validator("release_label")
    @classmethod
    def _check_release_label(cls, value: str) -> str:
        if not _RELEASE_LABEL.match(value):
            raise ValueError("must be an EMR release such as emr-7.8.0")
        return value

    @field_validator("log_uri", "staging_uri")
    @classmethod
    def _check_s3_uri(cls, value: str | None) -> str | None:
        if value is not None and not _S3_URI.match(value):
            raise ValueError("must be an S3 location such as s3://my-bucket/prism/")
        return value

    @field_validator("idle_timeout")
    @classmethod
    def _check_emr_idle_timeout(cls, value: float) -> float:
        # EMR's AutoTerminationPolicy accepts 60 seconds to 7 days.
        if value and not 1 <= value <= 7 * 24 * 60:
            raise ValueError("must be 0 (off) or from 1 minute to 7 days")
        return value

    @model_validator(mode="after")
    def _check_attach(self) -> EmrSpec:
        if self.cluster_id is None:
            return self
        clashing = [key for key in _CLUSTER_KEYS if key in self.model_fields_set]
        if clashing:
            keys = ", ".join(clashing)
            verb = "applies" if len(clashing) == 1 else "apply"
            raise ValueError(
                f"{keys} only {verb} to a cluster Prism creates, but cluster_id "
                f"attaches to a running one; remove {keys} or remove cluster_id"
            )
        return self

    @model_validator(mode="after")
    def _check_steps_python(self) -> EmrSpec:
        # Steps give Prism no way to ask the master's interpreter for its
        # version before it builds the wheelhouse, so the name must carry it.
        if self.transport == "steps" and self.python is not None:
            version = self.python.removeprefix("python")
            if not (version.startswith("3.") and version[2:].isdigit()):
                raise ValueError(
                    "with transport: steps, python must name its version, such "
                    "as python3.11"
                )
        return self


AgentSpec = Annotated[
    VenvSpec | DockerSpec | SshSpec | Ec2Spec | EmrSpec, Field(discriminator="type")
]


class _AgentFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: AgentSpec


def validate_agent(path: Path, data: dict[str, Any]) -> AgentSettings:
    """Validate a rendered agent file and return its settings.

    Raises:
        ConfigError: naming the file and each invalid key, never a value.
    """
    try:
        spec = _AgentFile.model_validate(data).agent
    except ValidationError as error:
        raise _describe_validation_error(path, error) from None
    resources = getattr(spec, "resources", Resources())
    extra: dict[str, Any] = {
        key: getattr(spec, key, None)
        for key in (
            "host",
            "user",
            "port",
            "identity_file",
            "ssh_config",
            "workdir",
            "region",
            "ami",
            "instance_type",
            "volume_gb",
            "subnet_id",
            "iam_instance_profile",
            "key_name",
            "ssh_user",
            "ssh_proxy",
            "idle_timeout",
            "idle_action",
            "cluster_id",
            "release_label",
            "log_uri",
            "staging_uri",
            "service_role",
            "job_flow_role",
            "transport",
        )
    }
    if isinstance(spec, EmrSpec):
        extra.update(_emr_settings(spec))
    return AgentSettings(
        type=spec.type,
        requirements=str(spec.requirements) if spec.requirements else None,
        env=dict(spec.env),
        artifacts=tuple(spec.artifacts),
        timeout=spec.timeout,
        python=getattr(spec, "python", None),
        image=getattr(spec, "image", None),
        server_url=getattr(spec, "server_url", None),
        cpus=resources.cpus,
        memory=resources.memory,
        spot=getattr(spec, "spot", False),
        ssh_cidr=tuple(getattr(spec, "ssh_cidr", ())),
        **extra,
    )


def _emr_settings(spec: EmrSpec) -> dict[str, Any]:
    groups = spec.instance_groups
    instance_groups = {
        role: group.model_dump()
        for role, group in (
            ("master", groups.master),
            ("core", groups.core),
            ("task", groups.task),
        )
        if group is not None
    }
    scaling = spec.managed_scaling
    return {
        "instance_groups": instance_groups,
        "managed_scaling": scaling.model_dump() if scaling else None,
        "create_default_roles": spec.create_default_roles,
        "bootstrap": tuple(spec.bootstrap),
    }


def _describe_validation_error(path: Path, error: ValidationError) -> ConfigError:
    problems = []
    hint = None
    for item in error.errors():
        location = [str(part) for part in item["loc"]]
        # Discriminated unions add the type's tag to the location; drop it.
        if len(location) > 1 and location[1] in AGENT_TYPES:
            del location[1]
        key = ".".join(location)
        if item["type"] == "extra_forbidden":
            problems.append(f"{key}: unknown key")
            hint = hint or _suggest_key(location, error)
        elif item["type"] == "union_tag_invalid":
            # Only the tag: the input is the whole mapping, env values included.
            tag = (item.get("ctx") or {}).get("tag", "")
            problems.append(
                f"{key}.type: unknown agent type {tag!r}; expected one of "
                f"{', '.join(AGENT_TYPES)}"
            )
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
            problems.append(f"{key}: {message}")
    return ConfigError(f"{path}: {'; '.join(problems)}", hint=hint)


def _suggest_key(location: list[str], error: ValidationError) -> str | None:
    if location[:1] == ["agent"] and len(location) == 2:
        specs = (VenvSpec, DockerSpec, SshSpec, Ec2Spec, EmrSpec)
        owners = [
            spec.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
            for spec in specs
            if location[-1] in spec.model_fields
        ]
        if owners:
            return f"{location[-1]!r} is a key of {' and '.join(owners)} agents only."
        known = (
            set(VenvSpec.model_fields)
            | set(DockerSpec.model_fields)
            | set(SshSpec.model_fields)
            | set(Ec2Spec.model_fields)
            | set(EmrSpec.model_fields)
        )
    elif location[:2] == ["agent", "resources"]:
        known = set(Resources.model_fields)
    elif location[:2] == ["agent", "instance_groups"] and len(location) == 3:
        known = set(InstanceGroups.model_fields)
    elif location[:2] == ["agent", "instance_groups"]:
        known = set(InstanceGroup.model_fields)
    elif location[:2] == ["agent", "managed_scaling"]:
        known = set(ManagedScaling.model_fields)
    else:
        known = {"agent"}
    matches = difflib.get_close_matches(location[-1], sorted(known), n=1)
    return f"Did you mean {matches[0]!r}?" if matches else None
