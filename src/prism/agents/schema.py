"""The pydantic schema of agent files, imported only to validate a changed file."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from prism.agents.settings import AGENT_TYPES, AgentSettings
from prism.errors import ConfigError

__all__ = ["validate_agent"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MEMORY = re.compile(r"^\s*\d+(\.\d+)?\s*[kKmMgG]?[bB]?\s*$")


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


class Ec2Spec(_Spec):
    """An EC2 instance that Prism creates, reached over SSH."""

    type: Literal["ec2"]
    instance_type: str = Field(min_length=1)
    region: str | None = None
    ami: str | None = Field(
        default=None, description="default: the latest Amazon Linux 2023 image"
    )
    spot: bool = False
    volume_gb: int = Field(default=30, ge=8, le=16384)
    subnet_id: str | None = None
    iam_instance_profile: str | None = None
    key_name: str | None = None
    identity_file: str | None = None
    ssh_cidr: list[str] = Field(default_factory=lambda: ["auto"])
    ssh_user: str = "ec2-user"
    ssh_proxy: str | None = None
    python: str | None = None
    idle_timeout: float = Field(default=60, description="minutes; 0 turns it off")
    idle_action: Literal["stop", "terminate"] = "stop"

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
        if value < 0:
            raise ValueError("must be 0 (off) or more minutes")
        return value

    @field_validator("key_name", "subnet_id", "ami", "region", "ssh_proxy")
    @classmethod
    def _check_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty; leave the key out for the default")
        return value


AgentSpec = Annotated[
    VenvSpec | DockerSpec | SshSpec | Ec2Spec, Field(discriminator="type")
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
    extra = {
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
        )
    }
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
        known = (
            set(VenvSpec.model_fields)
            | set(DockerSpec.model_fields)
            | set(SshSpec.model_fields)
            | set(Ec2Spec.model_fields)
        )
    elif location[:2] == ["agent", "resources"]:
        known = set(Resources.model_fields)
    else:
        known = {"agent"}
    matches = difflib.get_close_matches(location[-1], sorted(known), n=1)
    return f"Did you mean {matches[0]!r}?" if matches else None
